/* Shared helpers for the Nightjar benchmark workloads.
 * Each workload times only its own loop (CLOCK_MONOTONIC) and prints
 * "elapsed=<seconds>" so that fork/exec of the workload itself and the
 * harness's shell overhead are not part of the measurement. It also prints
 * "cpu=<seconds>": the CPU its loop used (user + system, its threads and
 * reaped children), where a hook's in-kernel work is charged, and which
 * another task's scheduling on this shared machine moves less than wall time. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/resource.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* User + system CPU of this process's threads and its waited-for children. */
static double cpu_s(void)
{
	struct rusage self, children;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &children);
	return self.ru_utime.tv_sec + self.ru_utime.tv_usec / 1e6 + self.ru_stime.tv_sec +
	       self.ru_stime.tv_usec / 1e6 + children.ru_utime.tv_sec +
	       children.ru_utime.tv_usec / 1e6 + children.ru_stime.tv_sec +
	       children.ru_stime.tv_usec / 1e6;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* Iteration count from argv[i], rejecting garbage rather than running 0 times. */
static long arg_count(int argc, char **argv, int i)
{
	char *end;
	long n = i < argc ? strtol(argv[i], &end, 10) : -1;
	if (n <= 0 || *end) {
		fprintf(stderr, "usage: %s N ...\n", argv[0]);
		exit(2);
	}
	return n;
}
#endif
