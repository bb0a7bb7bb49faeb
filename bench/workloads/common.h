/* Shared helpers for the Nightjar benchmark workloads.
 * Each workload times only its own loop (CLOCK_MONOTONIC) and prints
 * "elapsed=<seconds>" so that fork/exec of the workload itself and the
 * harness's shell overhead are not part of the measurement. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
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
