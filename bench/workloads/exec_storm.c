/* exec storm: N times fork + execve("/bin/true") + waitpid.
 * Exercises the process exec/fork/exit hooks of a monitor.
 * usage: exec_storm N */
#include "common.h"
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = arg_count(argc, argv, 1);
	char *const args[] = { "/bin/true", NULL };
	char *const env[] = { NULL };
	double t0 = now_s(), c0 = cpu_s();

	for (long i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			execve(args[0], args, env);
			_exit(127); /* exec failed: parent reports it below */
		}
		int st;
		if (waitpid(pid, &st, 0) < 0)
			die("waitpid");
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "child failed (status %d)\n", st);
			return 1;
		}
	}
	printf("elapsed=%.6f\ncpu=%.6f\n", now_s() - t0, cpu_s() - c0);
	return 0;
}
