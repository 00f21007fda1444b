/*
 * pause: the sandbox process of a pod (containerd's sandbox_image, the kubelet's
 * --pod-infra-container-image). It holds the pod's namespaces open: it sleeps until SIGINT or
 * SIGTERM and then exits 0, and as PID 1 of a shared PID namespace it reaps every child that is
 * re-parented to it. Built with `gcc -static` by `podid-images build` (image podid.test/pause).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	struct sigaction stop, child;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("podid pause");
		return 0;
	}
	if (getpid() != 1)
		fputs("pause: not PID 1: orphans of this namespace are not reaped here\n", stderr);

	memset(&stop, 0, sizeof(stop));
	stop.sa_handler = on_stop;
	memset(&child, 0, sizeof(child));
	child.sa_handler = on_child;
	child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
	    sigaction(SIGCHLD, &child, NULL) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	for (;;)
		pause();
}
