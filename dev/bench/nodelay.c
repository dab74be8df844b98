/*
 * Benchmark-only LD_PRELOAD shim: sets TCP_NODELAY on every TCP socket a process connects.
 * pulsar-rs 6.9 never sets it, so the client's small frames (sends, acks, flow permits) wait
 * behind Nagle's algorithm for the broker's delayed ACK. dev/bench-pipeline.sh runs the outbox
 * pipeline with and without this shim to measure what that costs. Never used by a service.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect) {
        real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    }
    int type = 0;
    socklen_t type_len = sizeof type;
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)
        && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) == 0 && type == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return real_connect(fd, addr, len);
}
