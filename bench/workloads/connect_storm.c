/* connect storm: N TCP connections to a listener on 127.0.0.1:<ephemeral>.
 * A server thread accepts and closes each connection; the client connects,
 * waits for that close, and closes too. Exercises connect/accept hooks.
 *
 * The listener has SO_LINGER {on, 0}, inherited by accepted sockets, so the
 * server's close sends RST: no TIME_WAIT sockets pile up and hundreds of
 * thousands of connections do not exhaust the ephemeral port range.
 * The client's read() waits for that RST, so every connection is fully
 * accepted before the next starts (one at a time, deterministic counts).
 *
 * usage: connect_storm N      prints port=<listener port> and elapsed=<s> */
#define _GNU_SOURCE /* accept4 */
#include "common.h"
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static int lfd;
static long n;

static void *server(void *arg)
{
	(void)arg;
	for (long i = 0; i < n; i++) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			die("accept4");
		close(c);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	n = arg_count(argc, argv, 1);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	if (setsockopt(lfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
		die("SO_LINGER");
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0)
		die("bind/listen");
	if (getsockname(lfd, (struct sockaddr *)&sa, &len) < 0)
		die("getsockname");

	pthread_t th;
	if (pthread_create(&th, NULL, server, NULL))
		die("pthread_create");

	double t0 = now_s(), c0 = cpu_s();
	for (long i = 0; i < n; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			die("socket");
		/* On loopback the server may accept and reset the connection
		 * before connect() returns here: ECONNRESET still means the
		 * connection was established and accepted. */
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != ECONNRESET)
			die("connect");
		char b;
		(void)read(fd, &b, 1); /* returns on the server's RST (ECONNRESET) */
		close(fd);
	}
	double el = now_s() - t0, cpu = cpu_s() - c0;
	pthread_join(th, NULL);
	printf("port=%d\nelapsed=%.6f\ncpu=%.6f\n", ntohs(sa.sin_port), el, cpu);
	return 0;
}
