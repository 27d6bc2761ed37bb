/*
 * What a hostile repository would try, one attempt per invocation, printing how it went:
 * "ok" (or "created" for sockets), or the errno name. Compiled by sandbox_hostile.rs at test
 * time with the system C compiler and run inside (and, for controls, outside) the sandbox.
 *
 * SAFETY RULE: the vsock attempt only *creates* a socket and closes it at once; it never
 * connects (CID 2 on these machines is infrastructure that is not ours).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static int report(long ret) {
    if (ret >= 0) {
        puts("ok");
        return 0;
    }
    switch (errno) {
    case EPERM: puts("EPERM"); break;
    case EACCES: puts("EACCES"); break;
    case ENOENT: puts("ENOENT"); break;
    case EINVAL: puts("EINVAL"); break;
    case EFAULT: puts("EFAULT"); break;
    case EAGAIN: puts("EAGAIN"); break;
    case ENOSYS: puts("ENOSYS"); break;
    case EBADF: puts("EBADF"); break;
    case EOPNOTSUPP: puts("EOPNOTSUPP"); break;
    case EAFNOSUPPORT: puts("EAFNOSUPPORT"); break;
    case ESRCH: puts("ESRCH"); break;
    case ENOTDIR: puts("ENOTDIR"); break;
    case EROFS: puts("EROFS"); break;
    case ECONNREFUSED: puts("ECONNREFUSED"); break;
    case ENETUNREACH: puts("ENETUNREACH"); break;
    case EADDRINUSE: puts("EADDRINUSE"); break;
    case ETIMEDOUT: puts("ETIMEDOUT"); break;
    case EINPROGRESS: puts("ETIMEDOUT"); break; /* SO_SNDTIMEO ran out */
    case EHOSTUNREACH: puts("EHOSTUNREACH"); break;
    default: printf("errno %d\n", errno); break;
    }
    return 1;
}

/* 127.0.0.1:port (0: any port). */
static struct sockaddr_in loopback(const char *port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port ? atoi(port) : 0)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* A server for the controls: says "listening", then tells every client `msg` and hangs up. */
static _Noreturn int serve(int fd, const char *msg) {
    puts("listening");
    fflush(stdout);
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c >= 0) {
            (void)!write(c, msg, strlen(msg));
            close(c);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: probe MODE [ARG]\n", stderr);
        return 2;
    }
    const char *mode = argv[1];
    const char *arg = argc > 2 ? argv[2] : "";
    setvbuf(stdout, NULL, _IONBF, 0);

    if (!strcmp(mode, "read")) {
        int fd = open(arg, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            char c;
            (void)!read(fd, &c, 1); /* never printed: the point is whether it opens */
            close(fd);
        }
        return report(fd);
    }
    if (!strcmp(mode, "connect-unix") && argc > 2) {
        /* a same-uid server (tmux, ssh-agent): connect, then read what it says */
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
            return report(-1);
        char buf[128] = {0};
        ssize_t n = read(fd, buf, sizeof buf - 1);
        printf("ok %s\n", n > 0 ? buf : "");
        return 0;
    }
    if (!strcmp(mode, "serve-unix") && argc > 3) {
        /* for the controls: a same-uid server (tmux-like) that tells every client a secret */
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 8) < 0)
            return report(-1);
        return serve(fd, argv[3]);
    }
    if (!strcmp(mode, "serve-ip") && argc > 4) {
        /* for the test internet: answer argv[4] on ADDR:PORT */
        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
        inet_pton(AF_INET, argv[2], &a.sin_addr);
        if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 8) < 0)
            return report(-1);
        return serve(l, argv[4]);
    }
    if (!strcmp(mode, "open-ro") && argc > 2) {
        return report(open(argv[2], O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    }
    if (!strcmp(mode, "connect-tcp") && argc > 2) {
        /* a loopback service of another principal */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = loopback(argv[2]);
        return report(connect(fd, (struct sockaddr *)&a, sizeof a));
    }
    if (!strcmp(mode, "connect-ip") && argc > 3) {
        /* the internet (or what must not be reached): connect within 2 s, read a line */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct timeval tv = {.tv_sec = 2};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
        if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1)
            return 2;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
            return report(-1);
        char buf[64] = {0};
        ssize_t n = read(fd, buf, sizeof buf - 1);
        printf("ok %s\n", n > 0 ? buf : "");
        return 0;
    }
    if (!strcmp(mode, "serve-tcp")) {
        /* its own loopback server and client: listen, connect, accept */
        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = loopback(NULL);
        socklen_t len = sizeof a;
        if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
            getsockname(l, (struct sockaddr *)&a, &len) < 0)
            return report(-1);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) < 0)
            return report(-1);
        return report(accept(l, NULL, NULL));
    }
    if (!strcmp(mode, "serve-tcp-port") && argc > 2) {
        /* a dev server on 127.0.0.1:PORT that answers "dev" to every client */
        int l = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = loopback(argv[2]);
        if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 8) < 0)
            return report(-1);
        return serve(l, "dev");
    }
    if (!strcmp(mode, "bind-tcp") && argc > 2) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = loopback(argv[2]);
        return report(bind(fd, (struct sockaddr *)&a, sizeof a));
    }
    if (!strcmp(mode, "shm-attach") && argc > 2) {
        /* another process's SysV segment, by key */
        int id = shmget((key_t)atoi(argv[2]), 0, 0);
        if (id < 0)
            return report(-1);
        void *p = shmat(id, NULL, SHM_RDONLY);
        if (p == (void *)-1)
            return report(-1);
        printf("ok %.32s\n", (char *)p);
        return 0;
    }
    if (!strcmp(mode, "shm-create") && argc > 2) {
        /* for the control: a 0600 segment holding a secret, left in place */
        int id = shmget((key_t)atoi(argv[2]), 4096, IPC_CREAT | 0600);
        if (id < 0)
            return report(-1);
        char *p = shmat(id, NULL, 0);
        if (p == (void *)-1)
            return report(-1);
        strcpy(p, argc > 3 ? argv[3] : "secret");
        printf("ok %d\n", id);
        return 0;
    }
    if (!strcmp(mode, "nofile")) {
        struct rlimit r;
        getrlimit(RLIMIT_NOFILE, &r);
        printf("%llu %llu\n", (unsigned long long)r.rlim_cur, (unsigned long long)r.rlim_max);
        return 0;
    }
    if (!strcmp(mode, "list")) {
        int fd = open(arg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        return report(fd);
    }
    if (!strcmp(mode, "write")) {
        int fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            (void)!write(fd, "x", 1);
            close(fd);
            if (strncmp(arg, "/dev/", 5) != 0)
                unlink(arg);
        }
        return report(fd);
    }
    if (!strcmp(mode, "vsock")) {
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            close(fd); /* created only; never connected */
            puts("created");
            return 0;
        }
        return report(fd);
    }
    if (!strcmp(mode, "vsock-pair")) {
        int sv[2];
        int ret = socketpair(AF_VSOCK, SOCK_STREAM, 0, sv);
        if (ret == 0) {
            close(sv[0]);
            close(sv[1]);
        }
        return report(ret);
    }
    if (!strcmp(mode, "io_uring")) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        long fd = syscall(SYS_io_uring_setup, 4, &p);
        if (fd >= 0)
            close((int)fd);
        return report(fd);
    }
    if (!strcmp(mode, "ptrace")) {
        /* SEIZE does not stop the tracee; exiting detaches. */
        pid_t pid = (pid_t)atoi(arg);
        return report(ptrace(PTRACE_SEIZE, pid, 0, 0));
    }
    if (!strcmp(mode, "ptrace-child")) {
        pid_t child = fork();
        if (child == 0) {
            pause();
            _exit(0);
        }
        long ret = ptrace(PTRACE_SEIZE, child, 0, 0);
        int saved = errno;
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        errno = saved;
        return report(ret);
    }
    if (!strcmp(mode, "vm-read")) {
        pid_t pid = arg[0] ? (pid_t)atoi(arg) : getpid();
        char buf[8];
        static char target[8] = "target";
        struct iovec local = {buf, sizeof buf};
        struct iovec remote = {target, sizeof target};
        return report(process_vm_readv(pid, &local, 1, &remote, 1, 0));
    }
    if (!strcmp(mode, "setuid0"))
        return report(setresuid(0, 0, 0));
    if (!strcmp(mode, "alloc")) {
        long mb = atol(arg);
        for (long i = 0; i < mb; i++) {
            char *p = malloc(1 << 20);
            if (!p)
                return report(-1);
            memset(p, 1, 1 << 20);
        }
        puts("survived");
        return 0;
    }
    if (!strcmp(mode, "int80")) {
#if defined(__x86_64__)
        long ret;
        /* i386 getpid (20) through the 32-bit entry point. */
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
        printf("int80 getpid %ld\n", ret);
        return 0;
#else
        puts("not x86-64");
        return 3;
#endif
    }
    if (!strcmp(mode, "syscall")) {
        long ret;
        if (!strcmp(arg, "bpf"))
            ret = syscall(SYS_bpf, 0, NULL, 0);
        else if (!strcmp(arg, "keyctl"))
            ret = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0);
        else if (!strcmp(arg, "add_key"))
            ret = syscall(SYS_add_key, "user", "probe", "x", 1, -3);
        else if (!strcmp(arg, "userfaultfd"))
            ret = syscall(SYS_userfaultfd, 0);
        else if (!strcmp(arg, "perf_event_open"))
            ret = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
        else if (!strcmp(arg, "mount"))
            ret = mount("none", "/nonexistent-probe", "tmpfs", 0, NULL);
        else if (!strcmp(arg, "umount2"))
            ret = umount2("/nonexistent-probe", 0);
        else if (!strcmp(arg, "kexec_load"))
            ret = syscall(SYS_kexec_load, 0, 0, NULL, 0);
        else if (!strcmp(arg, "init_module"))
            ret = syscall(SYS_init_module, NULL, 0, "");
        else if (!strcmp(arg, "unshare"))
            ret = syscall(SYS_unshare, 0);
        else if (!strcmp(arg, "unshare-user"))
            ret = syscall(SYS_unshare, CLONE_NEWUSER);
        else if (!strcmp(arg, "setns-any"))
            ret = syscall(SYS_setns, open("/proc/self/ns/user", O_RDONLY), 0);
        else if (!strcmp(arg, "clone3"))
            ret = syscall(SYS_clone3, NULL, 0); /* EFAULT/EINVAL when the kernel sees it */
        else if (!strcmp(arg, "clone-user")) {
            /* A raw clone with CLONE_NEWUSER: the child exits at once. */
            ret = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
            if (ret == 0)
                _exit(0);
            if (ret > 0)
                waitpid((pid_t)ret, NULL, 0);
        } else if (!strcmp(arg, "posix_spawn")) {
            /* glibc tries clone3 first and must fall back to clone on ENOSYS. */
            pid_t pid;
            char *child_argv[] = {"/bin/true", NULL};
            char *child_env[] = {NULL};
            int e = posix_spawn(&pid, "/bin/true", NULL, NULL, child_argv, child_env);
            int status = 0;
            if (e == 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
                ret = 0;
            else {
                errno = e ? e : ECHILD;
                ret = -1;
            }
        }
        else {
            fprintf(stderr, "unknown syscall %s\n", arg);
            return 2;
        }
        if (ret >= 0 && !strcmp(arg, "userfaultfd"))
            close((int)ret);
        return report(ret);
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
