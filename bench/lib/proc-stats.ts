// CPU time and resident memory of another process, read from /proc (Linux only).
import { readFileSync } from 'node:fs';

/** Kernel clock ticks per second for /proc/<pid>/stat times (USER_HZ; 100 on every mainstream Linux). */
const TICKS_PER_SECOND = 100;

/** utime + stime of `pid` in seconds (fields 14 and 15 of /proc/<pid>/stat). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  // comm (field 2) may hold spaces and parentheses: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  return (utime + stime) / TICKS_PER_SECOND;
}

/** A /proc/<pid>/status memory line (VmRSS, VmHWM, …) in bytes. */
export function statusBytes(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

export const rssBytes = (pid: number): number => statusBytes(pid, 'VmRSS');

export interface CpuSample {
  cpuSeconds: number;
  wallSeconds: number;
  /** cpuSeconds / wallSeconds: 1.0 = one core busy all the time. */
  coreFraction: number;
}

/** Starts measuring the CPU time `pid` uses; stop() returns the totals since start. */
export function startCpuSample(pid: number): { stop(): CpuSample } {
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  return {
    stop() {
      const cpu = cpuSeconds(pid) - cpu0;
      const wall = (performance.now() - t0) / 1000;
      return { cpuSeconds: cpu, wallSeconds: wall, coreFraction: wall > 0 ? cpu / wall : NaN };
    },
  };
}
