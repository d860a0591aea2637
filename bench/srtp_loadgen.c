// Pinhole's SRTP variant of the shared closed-loop UDP load generator
// (the reference C load generator, loadgen.c): the same loop, measurement and JSON line, plus
//   --mode srtp --key HEX : RTP as in --mode rtp, protected with libsrtp
//                           (AES_CM_128_HMAC_SHA1_80, 30-byte master key+salt in
//                           hex) so that a real SRTP relay authenticates it;
//                           --size is the size on the wire (tag included).
//   --src-port P          : bind the sending socket to 127.0.0.1:P, so the relay
//                           under test can have its leg latched to that address.
//   --srtp-pool N         : (srtp) protect N packets before the run (sequence numbers
//                           0..N-1, so the rollover counter increments past 65535)
//                           and only send them during it: the generator does no
//                           crypto while it measures. The measurement ends early,
//                           with "pool_exhausted": 1, when the pool runs out.
//   --fanout F            : a relay sends F packets to the sink per packet in
//                           (an SFU with F receivers): F packets received release
//                           one new request; "in_rate" is requests sent per second.
//   --sink-any            : bind the sink to 0.0.0.0:P, so receivers latched to
//                           127.0.0.2:P, 127.0.0.3:P ... all arrive on one socket.
//   --coalesce-us N       : after a receive that drained the socket, nap N µs before
//                           waiting again, as a NIC moderates its interrupts. On
//                           loopback the sender's sendto delivers into the receiver's
//                           socket and wakes it, on the sender's CPU: a generator that
//                           sleeps in recv after every reply charges the server under
//                           test one wake-up (an IPI; about 4 µs in a VM) per answer,
//                           and the slower the server, the more often. Napping, the
//                           generator is not waiting when replies land, so nobody is
//                           woken; the window keeps the server busy meanwhile.
//   --streams N --pps R   : paced and open loop instead (bench/capacity.py): N streams,
//                           each a participant of its own (SSRC --ssrc-base + i, its own
//                           libsrtp session on the one --key) sending R packets per second
//                           from address --addr-base + i, port --sink-port, phases spread
//                           evenly over a period; packets are protected as they go. One
//                           socket bound to 0.0.0.0:--sink-port sends them all (the source
//                           address per packet: IP_PKTINFO) and counts what the relay
//                           forwards to any stream. Only packets whose RTP sequence number
//                           was sent in the measured window (after --warmup, for
//                           --duration) count, so one in flight at either end is neither
//                           lost nor extra: "expected" = sent x --fanout, and "recv" were
//                           forwarded. "late": packets sent more than a period after their
//                           time; "sink_drops": forwarded packets this socket's buffer had
//                           no room for (the generator fell behind, not the relay);
//                           "server_wait": seconds a second the relay (--server-pid) was
//                           runnable but waited for a CPU; "server_drops": datagrams the
//                           kernel dropped for the relay's socket, its buffer full.
// Build: gcc -O2 -o srtp_loadgen srtp_loadgen.c -lsrtp2
//
// The original header follows.
//
// Closed-loop UDP load generator (one process, one thread, non-blocking batched I/O).
//
// Keeps W requests in flight against a target; every valid reply received allows
// one new request to be sent.  Modes:
//   echo : payload of --size bytes, reply must have the same size (echo servers)
//   stun : requests cycled from --pool file (u16 length + bytes records), reply must
//          be a STUN Binding Success (type 0x0101, magic cookie) -> STUN responders
//   rtp  : RTP packets of --size bytes, seq/ts incremented per packet (for SRTP relays)
// Relay (one-way forwarding) measurement: --sink-port P binds a second socket on
// 127.0.0.1:P and counts packets arriving there instead of replies on the sending
// socket (the server forwards what it receives on its port to 127.0.0.1:P).
//
// Output: one JSON line.  server_cpu/gen_cpu = CPU seconds used per wall second
// during the measured window (from /proc/<pid>/stat, all threads).
//
// Build: gcc -O2 -o loadgen loadgen.c
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <srtp2/srtp.h>
#include <linux/sock_diag.h>

#define MAXB 64
#define MAXPKT 2048

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double proc_cpu(int pid) {
    char path[64], buf[2048];
    if (pid <= 0) return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    // fields after ')' : state(3) ... utime(14) stime(15)
    unsigned long ut = 0, st = 0;
    int field = 2;
    char *tok = strtok(p + 1, " ");
    while (tok) {
        field++;
        if (field == 14) ut = strtoul(tok, 0, 10);
        if (field == 15) { st = strtoul(tok, 0, 10); break; }
        tok = strtok(0, " ");
    }
    return (double)(ut + st) / sysconf(_SC_CLK_TCK);
}

static uint8_t *pool;
static size_t *pool_off;
static uint16_t *pool_len;
static int pool_n;

static void load_pool(const char *fn) {
    FILE *f = fopen(fn, "rb");
    if (!f) { perror("pool"); exit(1); }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    pool = malloc(sz);
    if (fread(pool, 1, sz, f) != (size_t)sz) { perror("read pool"); exit(1); }
    fclose(f);
    int cap = 1 << 16;
    pool_off = malloc(cap * sizeof(size_t));
    pool_len = malloc(cap * sizeof(uint16_t));
    long pos = 0;
    while (pos + 2 <= sz && pool_n < cap) {
        uint16_t l = pool[pos] | (pool[pos + 1] << 8);
        pool_off[pool_n] = pos + 2;
        pool_len[pool_n] = l;
        pool_n++;
        pos += 2 + l;
    }
}

enum { M_ECHO, M_STUN, M_RTP, M_SRTP };

static srtp_t srtp_session;
static unsigned char master_key[30];

// seconds process `pid` has waited, runnable, for a CPU (/proc/PID/schedstat, field 2)
static double proc_wait(int pid) {
    char path[64];
    unsigned long long run = 0, wait = 0;
    snprintf(path, sizeof path, "/proc/%d/schedstat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fscanf(f, "%llu %llu", &run, &wait) == 2;
    fclose(f);
    return ok ? wait / 1e9 : -1;
}

// datagrams the kernel dropped for the UDP socket on 127.0.0.1:port (/proc/net/udp)
static long udp_drops(int port) {
    char line[512], want[32];
    long drops = -1;
    snprintf(want, sizeof want, "0100007F:%04X", port);
    FILE *f = fopen("/proc/net/udp", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {  // sl local remote ... (10 fields) ... drops
        char local[64];
        long d;
        if (sscanf(line, "%*s %63s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %ld", local, &d) == 2
            && !strcmp(local, want))
            drops = d;
    }
    fclose(f);
    return drops;
}

// --streams: paced, open loop, one SRTP session per stream (see the header)
static int paced(const char *target, int streams, double pps, int fanout, int sink_port,
                 const char *addr_base, uint32_t ssrc_base, int size, double warmup,
                 double duration, int spid, const char *label) {
    uint64_t k0 = (uint64_t)(pps * warmup + 0.5), k1 = k0 + (uint64_t)(pps * duration + 0.5);
    if (streams < 1 || pps <= 0 || k1 <= k0 || k1 > 65536 || size < 22 || size > MAXPKT) {
        fprintf(stderr, "--streams/--pps/--duration: at least one packet, at most 65536 a stream\n");
        return 2;
    }
    srtp_t *sessions = calloc((size_t)streams, sizeof *sessions);
    for (int i = 0; i < streams; i++) {
        srtp_policy_t policy;
        memset(&policy, 0, sizeof policy);
        srtp_crypto_policy_set_rtp_default(&policy.rtp);
        srtp_crypto_policy_set_rtcp_default(&policy.rtcp);
        policy.ssrc.type = ssrc_specific;
        policy.ssrc.value = ssrc_base + (uint32_t)i;
        policy.key = master_key;
        policy.window_size = 128;
        if (srtp_create(&sessions[i], &policy)) { fprintf(stderr, "libsrtp: session %d\n", i); return 1; }
    }
    char host[64];
    int port;
    struct in_addr base;
    if (sscanf(target, "%63[^:]:%d", host, &port) != 2 || inet_pton(AF_INET, addr_base, &base) != 1) return 2;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &dst.sin_addr);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 64 << 20;  // ~100 ms of forwarded packets at 500 k/s, should the generator nap long
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big))  // not root: rmem_max
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
    struct sockaddr_in loc = {.sin_family = AF_INET, .sin_port = htons(sink_port)};
    loc.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, (void *)&loc, sizeof loc) < 0) { perror("bind"); return 1; }

    static uint8_t sbuf[MAXB][MAXPKT], rbuf[MAXB][MAXPKT];
    static char cbuf[MAXB][CMSG_SPACE(sizeof(struct in_pktinfo))];
    struct mmsghdr smsg[MAXB], rmsg[MAXB];
    struct iovec siov[MAXB], riov[MAXB];
    int window[MAXB];  // slot q holds a packet of the measured window
    memset(smsg, 0, sizeof smsg);
    memset(rmsg, 0, sizeof rmsg);
    memset(cbuf, 0, sizeof cbuf);
    for (int q = 0; q < MAXB; q++) {
        siov[q].iov_base = sbuf[q];
        smsg[q].msg_hdr = (struct msghdr){.msg_name = &dst, .msg_namelen = sizeof dst,
                                          .msg_iov = &siov[q], .msg_iovlen = 1,
                                          .msg_control = cbuf[q], .msg_controllen = sizeof cbuf[q]};
        struct cmsghdr *c = CMSG_FIRSTHDR(&smsg[q].msg_hdr);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
        riov[q] = (struct iovec){.iov_base = rbuf[q], .iov_len = MAXPKT};
        rmsg[q].msg_hdr.msg_iov = &riov[q];
        rmsg[q].msg_hdr.msg_iovlen = 1;
    }
    prctl(PR_SET_TIMERSLACK, 1000UL);
    const struct timespec nap = {.tv_sec = 0, .tv_nsec = 250000};  // forwarded packets gather meanwhile
    double period = 1.0 / pps, gap = period / streams, tail = 0.25;  // s, for what is in flight
    uint64_t total = k1 * (uint64_t)streams, first = k0 * (uint64_t)streams, n = 0;
    uint64_t sent = 0, recv_ok = 0, recv_other = 0, bad = 0, send_err = 0, late = 0;
    double t0 = now_s() + 0.01, tm0 = 0, tm1 = 0, scpu = 0, gcpu = 0, swait = 0;
    long sdrops = 0;
    for (;;) {
        double t = now_s();
        int q = 0;
        while (n < total && q < MAXB && t0 + n * gap <= t) {
            if (n == first) {
                tm0 = t;
                scpu = proc_cpu(spid);
                swait = proc_wait(spid);
                sdrops = udp_drops(port);
                gcpu = proc_cpu(getpid());
            }
            uint32_t i = (uint32_t)(n % streams), ss = ssrc_base + i, ts = (uint32_t)(n / streams * 960);
            uint16_t s16 = (uint16_t)(n / streams);
            uint8_t *p = sbuf[q];
            for (int j = 12; j < size - 10; j++) p[j] = (uint8_t)(j * 7 + n);
            p[0] = 0x80; p[1] = 111;
            p[2] = s16 >> 8; p[3] = s16 & 0xff;
            p[4] = ts >> 24; p[5] = ts >> 16; p[6] = ts >> 8; p[7] = ts;
            p[8] = ss >> 24; p[9] = ss >> 16; p[10] = ss >> 8; p[11] = ss;
            int len_ = size - 10;
            if (srtp_protect(sessions[i], p, &len_)) { fprintf(stderr, "protect failed\n"); return 1; }
            siov[q].iov_len = (size_t)len_;
            struct in_pktinfo *info = (void *)CMSG_DATA(CMSG_FIRSTHDR(&smsg[q].msg_hdr));
            info->ipi_spec_dst.s_addr = htonl(ntohl(base.s_addr) + i);
            window[q] = n >= first;
            if (window[q] && t - (t0 + n * gap) > period) late++;
            q++;
            n++;
        }
        for (int done = 0; done < q;) {
            int r = sendmmsg(fd, smsg + done, (unsigned)(q - done), 0);
            if (r < 0) {
                if (errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED && errno != EINTR) { perror("send"); return 1; }
                send_err++;  // the packet in slot `done` is not sent
                r = 1;
            } else {
                for (int k = done; k < done + r; k++) sent += window[k];
            }
            done += r;
        }
        if (n == total && tm1 == 0) {
            tm1 = now_s();
            scpu = spid > 0 ? (proc_cpu(spid) - scpu) / (tm1 - tm0) : -1;
            swait = spid > 0 && swait >= 0 ? (proc_wait(spid) - swait) / (tm1 - tm0) : -1;
            sdrops = udp_drops(port) - sdrops;
            gcpu = (proc_cpu(getpid()) - gcpu) / (tm1 - tm0);
        }
        int r;
        while ((r = recvmmsg(fd, rmsg, MAXB, MSG_DONTWAIT, NULL)) > 0) {
            for (int k = 0; k < r; k++) {
                uint8_t *p = rbuf[k];
                uint64_t seq = (uint64_t)(p[2] << 8 | p[3]);
                if ((int)rmsg[k].msg_len != size) bad++;
                else if (seq >= k0 && seq < k1) recv_ok++;
                else recv_other++;
            }
            if (r < MAXB) break;
        }
        if (tm1 > 0 && t >= tm1 + tail) break;
        if (q < MAXB) nanosleep(&nap, NULL);
    }
    uint32_t mem[SK_MEMINFO_VARS];
    socklen_t ml = sizeof mem;
    long drops = getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &ml) == 0 && ml > SK_MEMINFO_DROPS * sizeof(uint32_t)
                 ? (long)mem[SK_MEMINFO_DROPS] : -1;
    double el = tm1 - tm0;
    printf("{\"label\":\"%s\",\"mode\":\"paced\",\"streams\":%d,\"pps\":%.1f,\"fanout\":%d,\"size\":%d,"
           "\"duration\":%.3f,\"sent\":%lu,\"expected\":%lu,\"recv\":%lu,\"recv_other\":%lu,\"bad\":%lu,"
           "\"in_rate\":%.1f,\"rate\":%.1f,\"send_err\":%lu,\"late\":%lu,\"sink_drops\":%ld,"
           "\"server_cpu\":%.3f,\"server_wait\":%.3f,\"server_drops\":%ld,\"gen_cpu\":%.3f}\n",
           label, streams, pps, fanout, size, el, (unsigned long)sent, (unsigned long)(sent * fanout),
           (unsigned long)recv_ok, (unsigned long)recv_other, (unsigned long)bad, sent / el, recv_ok / el,
           (unsigned long)send_err, (unsigned long)late, drops, scpu, swait, sdrops, gcpu);
    return 0;
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

int main(int argc, char **argv) {
    const char *target = "127.0.0.1:9000", *poolf = NULL, *label = "";
    int mode = M_ECHO, size = 172, window = 64, sink_port = 0, batch = 64, spid = 0, src_port = 0;
    const char *keyhex = NULL;
    double duration = 5, warmup = 1, timeout_ms = 100;
    int spin = 0, pool_pkts = 0, fanout = 1, sink_any = 0, coalesce_us = 0, streams = 0;
    double pps = 50;
    const char *addr_base = "127.1.0.1";
    uint32_t ssrc_base = 0x10000;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i], *v = (i + 1 < argc) ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
        if (ARG("--target")) target = v;
        else if (ARG("--mode")) mode = !strcmp(v, "stun") ? M_STUN : !strcmp(v, "rtp") ? M_RTP : !strcmp(v, "srtp") ? M_SRTP : M_ECHO;
        else if (ARG("--key")) keyhex = v;
        else if (ARG("--src-port")) src_port = atoi(v);
        else if (ARG("--size")) size = atoi(v);
        else if (ARG("--pool")) poolf = v;
        else if (ARG("--window")) window = atoi(v);
        else if (ARG("--duration")) duration = atof(v);
        else if (ARG("--warmup")) warmup = atof(v);
        else if (ARG("--sink-port")) sink_port = atoi(v);
        else if (ARG("--batch")) batch = atoi(v);
        else if (ARG("--server-pid")) spid = atoi(v);
        else if (ARG("--timeout-ms")) timeout_ms = atof(v);
        else if (ARG("--label")) label = v;
        else if (!strcmp(a, "--spin")) spin = 1;
        else if (ARG("--srtp-pool")) pool_pkts = atoi(v);
        else if (ARG("--fanout")) fanout = atoi(v);
        else if (!strcmp(a, "--sink-any")) sink_any = 1;
        else if (ARG("--coalesce-us")) coalesce_us = atoi(v);
        else if (ARG("--streams")) streams = atoi(v);
        else if (ARG("--pps")) pps = atof(v);
        else if (ARG("--addr-base")) addr_base = v;
        else if (ARG("--ssrc-base")) ssrc_base = (uint32_t)strtoul(v, 0, 0);
        else { fprintf(stderr, "bad arg %s\n", a); return 2; }
    }
    if (coalesce_us) prctl(PR_SET_TIMERSLACK, 1000UL);  // naps of coalesce_us, not +50 us
    if (batch > MAXB) batch = MAXB;
    if (batch < 1) batch = 1;
    if (mode == M_STUN) {
        if (!poolf) { fprintf(stderr, "--pool required for stun\n"); return 2; }
        load_pool(poolf);
    }
    if (mode == M_SRTP) {
        if (!keyhex || strlen(keyhex) != 60) { fprintf(stderr, "--key: 60 hex digits required\n"); return 2; }
        for (int k = 0; k < 30; k++) master_key[k] = (unsigned char)(hexval(keyhex[2 * k]) << 4 | hexval(keyhex[2 * k + 1]));
        srtp_policy_t policy;
        memset(&policy, 0, sizeof policy);
        srtp_crypto_policy_set_rtp_default(&policy.rtp);
        srtp_crypto_policy_set_rtcp_default(&policy.rtcp);
        policy.ssrc.type = ssrc_any_outbound;
        policy.key = master_key;
        policy.window_size = 128;
        if (srtp_init() || srtp_create(&srtp_session, &policy)) { fprintf(stderr, "libsrtp init failed\n"); return 1; }
    }
    if (fanout < 1) fanout = 1;
    if (streams) {
        if (mode != M_SRTP || !sink_port) { fprintf(stderr, "--streams: --mode srtp and --sink-port\n"); return 2; }
        return paced(target, streams, pps, fanout, sink_port, addr_base, ssrc_base, size, warmup,
                     duration, spid, label);
    }
    uint8_t *srtp_pool = NULL;
    int srtp_pool_len = 0;
    if (mode == M_SRTP && pool_pkts > 0) {  // pre-protected: sequence 0..N-1, ROC included
        srtp_pool = malloc((size_t)pool_pkts * size);
        if (!srtp_pool) { fprintf(stderr, "pool of %d packets: out of memory\n", pool_pkts); return 1; }
        for (int k = 0; k < pool_pkts; k++) {
            uint8_t *p = srtp_pool + (size_t)k * size;
            uint16_t s16 = (uint16_t)k;
            uint32_t ts = (uint32_t)((uint64_t)k * 960), ss = 0x11223344;
            for (int j = 12; j < size; j++) p[j] = (uint8_t)(j * 7 + k);
            p[0] = 0x80; p[1] = 111;
            p[2] = s16 >> 8; p[3] = s16 & 0xff;
            p[4] = ts >> 24; p[5] = ts >> 16; p[6] = ts >> 8; p[7] = ts;
            p[8] = ss >> 24; p[9] = ss >> 16; p[10] = ss >> 8; p[11] = ss;
            int len_ = size - 10;
            if (srtp_protect(srtp_session, p, &len_) || len_ != size) { fprintf(stderr, "protect failed\n"); return 1; }
        }
        srtp_pool_len = size;
    }
    int exhausted = 0;
    char host[64];
    int port;
    if (sscanf(target, "%63[^:]:%d", host, &port) != 2) return 2;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &dst.sin_addr);

    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 4 << 20;
    setsockopt(tx, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    setsockopt(tx, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
    struct sockaddr_in loc = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &loc.sin_addr);
    loc.sin_port = htons(src_port);
    if (bind(tx, (void *)&loc, sizeof loc) < 0) { perror("bind"); return 1; }
    if (connect(tx, (void *)&dst, sizeof dst) < 0) { perror("connect"); return 1; }
    int rx = tx;
    if (sink_port) {
        rx = socket(AF_INET, SOCK_DGRAM, 0);
        setsockopt(rx, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
        int one = 1;
        setsockopt(rx, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        loc.sin_port = htons(sink_port);
        if (sink_any) loc.sin_addr.s_addr = htonl(INADDR_ANY);
        if (bind(rx, (void *)&loc, sizeof loc) < 0) { perror("bind sink"); return 1; }
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = (long)(timeout_ms * 1000)};
    setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    static uint8_t sbuf[MAXB][MAXPKT], rbuf[MAXB][MAXPKT];
    struct mmsghdr smsg[MAXB], rmsg[MAXB];
    struct iovec siov[MAXB], riov[MAXB];
    memset(smsg, 0, sizeof smsg);
    memset(rmsg, 0, sizeof rmsg);
    for (int i = 0; i < MAXB; i++) {
        for (int j = 0; j < MAXPKT; j++) sbuf[i][j] = (uint8_t)(j * 7 + i);
        siov[i].iov_base = sbuf[i];
        siov[i].iov_len = size;
        smsg[i].msg_hdr.msg_iov = &siov[i];
        smsg[i].msg_hdr.msg_iovlen = 1;
        riov[i].iov_base = rbuf[i];
        riov[i].iov_len = MAXPKT;
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t seq = 0, pool_i = 0;
    uint32_t ssrc = 0x11223344;

    // fill slot i with the next request
#define FILL(i)                                                                   \
    do {                                                                          \
        if (mode == M_STUN) {                                                     \
            int k = pool_i++ % pool_n;                                            \
            memcpy(sbuf[i], pool + pool_off[k], pool_len[k]);                     \
            siov[i].iov_len = pool_len[k];                                        \
        } else if (mode == M_SRTP && srtp_pool) {                                 \
            if (seq >= (uint64_t)pool_pkts) { exhausted = 1; break; }  /* ends FILL */ \
            siov[i].iov_base = srtp_pool + seq * srtp_pool_len;                   \
            siov[i].iov_len = srtp_pool_len;                                      \
        } else if (mode == M_SRTP) {                                              \
            uint8_t *p = sbuf[i];                                                 \
            uint16_t s16 = (uint16_t)seq;                                         \
            uint32_t ts = (uint32_t)(seq * 960), ss = ssrc;                       \
            p[0] = 0x80; p[1] = 111;                                              \
            p[2] = s16 >> 8; p[3] = s16 & 0xff;                                   \
            p[4] = ts >> 24; p[5] = ts >> 16; p[6] = ts >> 8; p[7] = ts;          \
            p[8] = ss >> 24; p[9] = ss >> 16; p[10] = ss >> 8; p[11] = ss;        \
            int len_ = size - 10;                                                 \
            if (srtp_protect(srtp_session, p, &len_)) { fprintf(stderr, "protect failed\n"); exit(1); } \
            siov[i].iov_len = len_;                                               \
        } else if (mode == M_RTP) {                                               \
            uint8_t *p = sbuf[i];                                                 \
            uint16_t s16 = (uint16_t)seq;                                         \
            uint32_t ts = (uint32_t)(seq * 960), ss = ssrc;                       \
            p[0] = 0x80; p[1] = 111;                                              \
            p[2] = s16 >> 8; p[3] = s16 & 0xff;                                   \
            p[4] = ts >> 24; p[5] = ts >> 16; p[6] = ts >> 8; p[7] = ts;          \
            p[8] = ss >> 24; p[9] = ss >> 16; p[10] = ss >> 8; p[11] = ss;        \
            siov[i].iov_len = size;                                               \
        } else {                                                                  \
            memcpy(sbuf[i], &seq, 8);                                             \
            siov[i].iov_len = size;                                               \
        }                                                                         \
        seq++;                                                                    \
    } while (0)

    uint64_t sent = 0, sent_m = 0;
    // send n requests, in chunks of <= batch
#define SEND(n)                                                                   \
    do {                                                                          \
        int left_ = (n);                                                          \
        while (left_ > 0) {                                                       \
            int k_ = left_ > batch ? batch : left_;                               \
            int q_ = 0;                                                           \
            for (; q_ < k_; q_++) { FILL(q_); if (exhausted) break; }             \
            if (q_ < k_) { k_ = q_; left_ = q_; if (!k_) break; }                 \
            int r_;                                                               \
            if (k_ == 1 && batch == 1) r_ = send(tx, sbuf[0], siov[0].iov_len, 0) >= 0 ? 1 : -1; \
            else r_ = sendmmsg(tx, smsg, k_, 0);                                  \
            if (r_ < 0) { if (errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED) { r_ = k_; send_err++; } else { perror("send"); return 1; } } \
            sent += r_;                                                           \
            left_ -= r_;                                                          \
        }                                                                         \
    } while (0)

    uint64_t credit = 0;
    uint64_t send_err = 0, recv_ok = 0, bad = 0, reprimes = 0, rx_total = 0;
    double t0 = now_s(), t_meas = t0 + warmup, t_end = t_meas + duration;
    double scpu0 = 0, gcpu0 = 0, tm0 = 0;
    int measuring = 0;
    double last_rx = t0;
    SEND(window);
    for (;;) {
        double t = now_s();
        if (!measuring && t >= t_meas) {
            measuring = 1;
            tm0 = t;
            scpu0 = proc_cpu(spid);
            gcpu0 = proc_cpu(getpid());
            sent_m = sent;
        }
        if (t >= t_end || exhausted) break;
        int n;
        int fl = spin ? MSG_DONTWAIT : 0;
        if (batch == 1) {
            ssize_t r = recv(rx, rbuf[0], MAXPKT, fl);
            if (r >= 0) { rmsg[0].msg_len = r; n = 1; } else n = -1;
        } else {
            n = recvmmsg(rx, rmsg, batch, spin ? MSG_DONTWAIT : MSG_WAITFORONE, NULL);
        }
        if (spin) {
            if (n > 0) last_rx = t;
            else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if ((t - last_rx) * 1000 < timeout_ms) continue;
                last_rx = t;
            }
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNREFUSED || errno == EINTR) {
                reprimes++;
                SEND(window);
                continue;
            }
            perror("recv");
            return 1;
        }
        int good = 0;
        for (int i = 0; i < n; i++) {
            unsigned len = rmsg[i].msg_len;
            uint8_t *p = rbuf[i];
            int ok;
            if (mode == M_STUN)
                ok = len >= 20 && p[0] == 0x01 && p[1] == 0x01 && p[4] == 0x21 && p[5] == 0x12 && p[6] == 0xA4 && p[7] == 0x42;
            else
                ok = (int)len == size;
            if (ok) good++; else bad++;
        }
        rx_total += n;
        if (measuring) recv_ok += good;
        credit += n;  // replace every reply (good or bad) so the window stays constant
        SEND(credit / fanout);
        credit %= fanout;
        if (coalesce_us && n < batch) {  // drained: let replies gather, nobody to wake
            struct timespec nap = {.tv_sec = 0, .tv_nsec = coalesce_us * 1000L};
            nanosleep(&nap, NULL);
        }
    }
    double tm1 = now_s();
    double el = tm1 - tm0;
    double scpu = spid > 0 ? (proc_cpu(spid) - scpu0) / el : -1;
    double gcpu = (proc_cpu(getpid()) - gcpu0) / el;
    printf("{\"label\":\"%s\",\"mode\":\"%s\",\"size\":%d,\"window\":%d,\"batch\":%d,\"duration\":%.3f,"
           "\"sent\":%lu,\"recv\":%lu,\"rate\":%.1f,\"bad\":%lu,\"reprimes\":%lu,\"send_err\":%lu,"
           "\"server_cpu\":%.3f,\"gen_cpu\":%.3f,\"spin\":%d,\"fanout\":%d,\"in_rate\":%.1f,"
           "\"pool\":%d,\"pool_exhausted\":%d}\n",
           label, mode == M_STUN ? "stun" : mode == M_RTP ? "rtp" : mode == M_SRTP ? "srtp" : "echo", size, window, batch, el,
           (unsigned long)(sent - sent_m), (unsigned long)recv_ok, recv_ok / el, (unsigned long)bad,
           (unsigned long)reprimes, (unsigned long)send_err, scpu, gcpu, spin, fanout,
           (sent - sent_m) / el, pool_pkts, exhausted);
    return 0;
}
