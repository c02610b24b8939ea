// The Capsid: the sandbox and resource limits a cell runs in (docs/SANDBOX.md).
export { findBwrap, probeBwrap, which } from './bwrap.js';
export { detectCgroups } from './cgroup.js';
export type { DoctorCheck } from './doctor.js';
export { diagnose, formatDoctor } from './doctor.js';
export type { Limits } from './limits.js';
export { DEFAULT_LIMITS, parseLimits, parseMemory } from './limits.js';
export * from './sandbox.js';
export { DENIED_SYSCALLS, deniedSyscalls, openSeccompFd, seccompArch, seccompFilter } from './seccomp.js';
export type { StemOptions } from './stem.js';
export { Stem } from './stem.js';
