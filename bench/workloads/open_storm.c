/* open storm: N times open(O_RDONLY) + close of one existing file.
 * glibc's open() is the openat syscall, the path monitors hook for file access.
 * usage: open_storm N PATH */
#include "common.h"
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = arg_count(argc, argv, 1);
	if (argc < 3) {
		fprintf(stderr, "usage: %s N PATH\n", argv[0]);
		return 2;
	}
	const char *path = argv[2];
	double t0 = now_s(), c0 = cpu_s();

	for (long i = 0; i < n; i++) {
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			die(path);
		close(fd);
	}
	printf("elapsed=%.6f\ncpu=%.6f\n", now_s() - t0, cpu_s() - c0);
	return 0;
}
