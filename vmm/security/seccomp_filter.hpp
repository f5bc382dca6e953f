#pragma once

#include <linux/filter.h>

#include <vector>

#include "vmm/security/seccomp_policy.hpp"

namespace vmm::security {

// A thread that makes a system call its policy doesn't allow is reported and the process killed:
// the SIGSYS reporter writes one line to stderr,
//   vmm: seccomp: <kind> thread made a forbidden system call: <name> (<number>)
// and the process then dies of SIGSYS's default action (killed by signal 31, with a core dump
// where they are enabled; a shell reports status 159).
//
// `kind`'s policy as a BPF program (libseccomp), for the native architecture; any other
// architecture (the 32-bit ABIs) kills the process. Throws vmm::Error if libseccomp fails.
std::vector<sock_filter> compile_seccomp_filter(ThreadKind kind);

// Compiles every kind's filter once per process and installs the SIGSYS reporter (chaining to a
// SIGSYS handler installed before it, for threads that are not vmm's). Idempotent; throws
// vmm::Error. Call it where errors can still be reported, before the threads start.
void prepare_seccomp_filters();

// Confines the calling thread, for the rest of its life, to `kind`'s policy (and sets
// no_new_privs on it). Only the calling thread: the others, and threads it has already started,
// are not affected; threads it starts later inherit the filter. Throws vmm::Error.
void confine_thread(ThreadKind kind);

}  // namespace vmm::security
