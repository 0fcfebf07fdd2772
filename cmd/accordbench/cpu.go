package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// clockTicksPerSecond is Linux's USER_HZ, the unit of the CPU times in
// /proc/PID/stat: 100 on every architecture Go supports.
const clockTicksPerSecond = 100

// processCPU returns the CPU time (user plus system, in clock ticks) that
// the processes pids have used so far, from /proc (Linux only).
func processCPU(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		t, err := parseStatCPU(data)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		total += t
	}
	return total, nil
}

// parseStatCPU returns utime+stime of a /proc/PID/stat line. The command
// name (field 2) is in parentheses and may hold spaces, so fields are
// counted from the last ')': utime and stime are fields 14 and 15.
func parseStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := bytes.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("too few fields")
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return utime + stime, nil
}

// cpuMeter measures the server processes' CPU time over a phase. The zero
// meter (no pids) measures nothing.
type cpuMeter struct {
	pids  []int
	start int64
	err   error
}

func (m *cpuMeter) begin() {
	if len(m.pids) > 0 {
		m.start, m.err = processCPU(m.pids)
	}
}

// perOp returns the server CPU time per operation since begin, in
// microseconds; 0 when not measured.
func (m *cpuMeter) perOp(ops int64) (float64, error) {
	if len(m.pids) == 0 || ops == 0 {
		return 0, nil
	}
	if m.err != nil {
		return 0, m.err
	}
	end, err := processCPU(m.pids)
	if err != nil {
		return 0, err
	}
	return float64(end-m.start) * 1e6 / clockTicksPerSecond / float64(ops), nil
}
