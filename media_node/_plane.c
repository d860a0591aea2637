/* The media node's UDP data plane: SRTP relayed between latched legs without Python.
 *
 * The engine (media_node/engine.py) stays the control plane: it latches legs,
 * tracks consent, decides who hears whom. For every leg latched on a UDP port it
 * installs a route here (media_node/plane.py): the leg's source address, its
 * inbound SRTP session, its SSRC and the receivers (socket, address, outbound
 * SRTP session). `drain` then reads the port until it would block and relays
 * each routed SRTP packet the way Engine._on_srtp does, with the same libsrtp
 * sessions and the same checks in the same order:
 *
 *   recvfrom; RTP (first byte 128-191, RFC 7983 §7) but not RTCP (RFC 5761 §4);
 *   source latched here; SSRC is the sender's (assigned by the cloud), read
 *   before decryption, so libsrtp never makes a stream for another SSRC;
 *   srtp_unprotect with the sender's session (tag and replay window, RFC 3711
 *   §3.3); for each receiver: consent (RFC 7675 §5.1) or drop, protect a copy
 *   (the last one protects in place), sendto.
 *
 * Everything else (STUN, SRTCP, unknown sources, cascades, stream sinks, a
 * simulated distance) is handed back to Python, untouched. Arrival order holds
 * on a port: a routed packet read after one handed back in the same drain is
 * held, and the next drain of that port relays it first (by the routes as they
 * are then), once Python has handled what came before it. libsrtp is called
 * through the function pointers of the copy pylibsrtp carries (the sessions are
 * pylibsrtp's; media_node/plane.py checks their cffi type before it makes a
 * plane), so there is one libsrtp in the process. No Python code runs while it
 * relays: the garbage collector (whose finalizers could change routes under it)
 * is held off for a drain and a take. A plane is initialised once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_DATAGRAM 2048 /* as the listener's transport.max_size (docs/design.md) */
#define ROOM 256          /* trailer room after the largest datagram */
#define MAX_SLOTS (1 << 20)
#define MAX_PORTS 16 /* UDP ports one plane reads and sends on (a node has 2-3) */
#define MAX_BUCKETS 64

typedef int (*srtp_call)(void *ctx, void *packet, int *length);

/* per-leg drop reasons, in the engine's words (media_node/engine.py, wire/srtp.py) */
enum { D_AUTH, D_REPLAY, D_ERROR, D_SSRC, D_NO_CONSENT, D_PROTECT_ERROR, N_DROPS };
static const char *const DROP_NAMES[N_DROPS] = {
    "auth", "replay", "error", "ssrc", "no_consent", "protect_error"};

typedef struct {
    unsigned long long packets_in, bytes_in, packets_out, bytes_out;
    unsigned long long drops[N_DROPS];
} counters_t;

typedef struct {
    int fd;
    int family;
    uint32_t scope; /* an IPv6 link-local address's interface */
    uint16_t port;  /* network order */
    uint8_t addr[16];
} key_t_;

typedef struct {
    int fd;
    struct sockaddr_storage to;
    socklen_t to_len;
    void *ctx;
    PyObject *owner; /* keeps the outbound session alive while routed */
    PyObject *address; /* the Python address, for a send handed back */
    Py_ssize_t slot;
    int no_consent;
} receiver_t;

typedef struct route {
    struct route *next;
    key_t_ key;
    void *ctx;
    PyObject *owner;
    Py_ssize_t slot;
    uint8_t ssrc[4];
    Py_ssize_t count;
    Py_ssize_t last; /* the last receiver with consent: it protects in place; -1: none */
    receiver_t *receivers;
} route_t;

/* a routed datagram read after one handed back: relayed first by the port's next drain */
typedef struct {
    int fd; /* -1: none */
    int len;
    struct sockaddr_storage src;
    uint8_t data[MAX_DATAGRAM];
} held_t;

typedef struct {
    PyObject_HEAD
    srtp_call unprotect, protect;
    int in_limit, out_limit; /* pylibsrtp's: its buffer, less the trailer for protect */
    route_t **table;
    size_t buckets, routes;
    counters_t *counters;
    Py_ssize_t slots;
    unsigned long long udp_errors, relayed;
    int backlogged[MAX_PORTS];
    int n_backlogged;
    /* sampled relay time, one packet in `every` (media_node/metrics.py RelayTiming) */
    long every, untimed;
    int n_bounds;
    double bounds[MAX_BUCKETS];
    unsigned long long bucket_counts[MAX_BUCKETS + 1];
    double timed_sum;
    held_t held[MAX_PORTS];
    uint8_t in[MAX_DATAGRAM + ROOM];
    uint8_t out[MAX_DATAGRAM + ROOM];
} Plane;

/* ------------------------------------------------------------------ addresses */

static int key_from_sockaddr(int fd, const struct sockaddr_storage *sa, key_t_ *key) {
    memset(key, 0, sizeof *key);
    key->fd = fd;
    key->family = sa->ss_family;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        key->port = in->sin_port;
        memcpy(key->addr, &in->sin_addr, 4);
        return 0;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        key->port = in6->sin6_port;
        key->scope = in6->sin6_scope_id;
        memcpy(key->addr, &in6->sin6_addr, 16);
        return 0;
    }
    return -1;
}

/* A Python socket address ((host, port) or (host, port, flow, scope)) as a sockaddr. */
static int sockaddr_from_py(PyObject *address, struct sockaddr_storage *sa, socklen_t *len) {
    const char *host;
    int port;
    unsigned int flow = 0, scope = 0;
    if (!PyTuple_Check(address) ||
        !PyArg_ParseTuple(address, "si|II", &host, &port, &flow, &scope)) {
        PyErr_SetString(PyExc_ValueError, "an address is (host, port[, flow, scope])");
        return -1;
    }
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return -1;
    }
    memset(sa, 0, sizeof *sa);
    struct sockaddr_in *in = (void *)sa;
    struct sockaddr_in6 *in6 = (void *)sa;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *len = sizeof *in;
        return 0;
    }
    memset(sa, 0, sizeof *sa);
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        in6->sin6_flowinfo = htonl(flow);
        in6->sin6_scope_id = scope;
        *len = sizeof *in6;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
    return -1;
}

/* The address as asyncio gives it to datagram_received. */
static PyObject *py_from_sockaddr(const struct sockaddr_storage *sa) {
    char text[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
        return Py_BuildValue("(si)", text, ntohs(in->sin_port));
    }
    const struct sockaddr_in6 *in6 = (const void *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    return Py_BuildValue("(siII)", text, ntohs(in6->sin6_port), ntohl(in6->sin6_flowinfo),
                         in6->sin6_scope_id);
}

/* ------------------------------------------------------------------ routes */

static size_t key_hash(const key_t_ *k) {
    uint64_t h = 1469598103934665603ULL;
    const uint8_t *p = (const uint8_t *)k;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return (size_t)h;
}

static route_t **find(Plane *self, const key_t_ *key) {
    route_t **at = &self->table[key_hash(key) & (self->buckets - 1)];
    while (*at != NULL && memcmp(&(*at)->key, key, sizeof *key) != 0) at = &(*at)->next;
    return at;
}

static void free_route(route_t *r) {
    for (Py_ssize_t i = 0; i < r->count; i++) {
        Py_XDECREF(r->receivers[i].owner);
        Py_XDECREF(r->receivers[i].address);
    }
    PyMem_Free(r->receivers);
    Py_XDECREF(r->owner);
    PyMem_Free(r);
}

static int grow_table(Plane *self) {
    size_t buckets = self->buckets * 2;
    route_t **table = PyMem_Calloc(buckets, sizeof *table);
    if (table == NULL) return -1;
    for (size_t b = 0; b < self->buckets; b++) {
        route_t *r = self->table[b];
        while (r != NULL) {
            route_t *next = r->next;
            size_t at = key_hash(&r->key) & (buckets - 1);
            r->next = table[at];
            table[at] = r;
            r = next;
        }
    }
    PyMem_Free(self->table);
    self->table = table;
    self->buckets = buckets;
    return 0;
}

static int ensure_slot(Plane *self, Py_ssize_t slot) {
    if (slot < 0 || slot >= MAX_SLOTS) {
        PyErr_SetString(PyExc_ValueError, "slot out of range");
        return -1;
    }
    if (slot < self->slots) return 0;
    Py_ssize_t slots = self->slots ? self->slots : 64;
    while (slots <= slot) slots *= 2;
    counters_t *c = PyMem_Realloc(self->counters, (size_t)slots * sizeof *c);
    if (c == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(c + self->slots, 0, (size_t)(slots - self->slots) * sizeof *c);
    self->counters = c;
    self->slots = slots;
    return 0;
}

/* A C pointer given as an int (cffi's uintptr_t cast); 0 is refused. */
static int pointer_of(PyObject *value, void **out) {
    *out = PyLong_Check(value) ? PyLong_AsVoidPtr(value) : NULL;
    if (*out != NULL) return 0;
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a pointer must be a nonzero int");
    return -1;
}

/* route(fd, address, slot, ctx, owner, ssrc, receivers): packets from `address` on `fd`
 * are relayed here. receivers: (fd, address, slot, ctx, owner, no_consent) each. */
static int ready(Plane *self) {
    if (self->table != NULL) return 1;
    PyErr_SetString(PyExc_RuntimeError, "Plane.__init__ has not succeeded");
    return 0;
}

static PyObject *Plane_route(Plane *self, PyObject *args) {
    int fd;
    if (!ready(self)) return NULL;
    PyObject *address, *ctx, *owner, *receivers;
    Py_ssize_t slot;
    unsigned int ssrc;
    if (!PyArg_ParseTuple(args, "iOnOOIO", &fd, &address, &slot, &ctx, &owner, &ssrc,
                          &receivers))
        return NULL;
    struct sockaddr_storage sa;
    socklen_t sl;
    if (sockaddr_from_py(address, &sa, &sl) < 0 || ensure_slot(self, slot) < 0) return NULL;
    PyObject *seq = PySequence_Tuple(receivers); /* a copy: item parsing can run Python code */
    if (seq == NULL) return NULL;
    route_t *r = PyMem_Calloc(1, sizeof *r);
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    if (r == NULL || (n && (r->receivers = PyMem_Calloc((size_t)n, sizeof *r->receivers)) == NULL)) {
        PyMem_Free(r);
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    key_from_sockaddr(fd, &sa, &r->key);
    r->owner = Py_NewRef(owner);
    if (pointer_of(ctx, &r->ctx) < 0) {
        free_route(r);
        Py_DECREF(seq);
        return NULL;
    }
    r->slot = slot;
    uint32_t wire = htonl(ssrc);
    memcpy(r->ssrc, &wire, 4);
    r->last = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        receiver_t *x = &r->receivers[i];
        PyObject *rctx, *rowner, *raddress;
        int no_consent;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(seq, i), "iOnOOp", &x->fd, &raddress,
                              &x->slot, &rctx, &rowner, &no_consent) ||
            sockaddr_from_py(raddress, &x->to, &x->to_len) < 0 ||
            ensure_slot(self, x->slot) < 0 || pointer_of(rctx, &x->ctx) < 0) {
            r->count = i;
            free_route(r);
            Py_DECREF(seq);
            return NULL;
        }
        x->owner = Py_NewRef(rowner);
        x->address = Py_NewRef(raddress);
        x->no_consent = no_consent;
        if (!no_consent) r->last = i;
    }
    r->count = n;
    Py_DECREF(seq);
    route_t **at = find(self, &r->key);
    if (*at != NULL) { /* replaces the route of the same source */
        route_t *old = *at;
        r->next = old->next;
        *at = r;
        free_route(old);
    } else {
        *at = r;
        if (++self->routes > self->buckets) (void)grow_table(self); /* else: longer chains */
    }
    Py_RETURN_NONE;
}

static PyObject *Plane_unroute(Plane *self, PyObject *args) {
    int fd;
    PyObject *address;
    if (!ready(self) || !PyArg_ParseTuple(args, "iO", &fd, &address)) return NULL;
    struct sockaddr_storage sa;
    socklen_t sl;
    if (sockaddr_from_py(address, &sa, &sl) < 0) return NULL;
    key_t_ key;
    key_from_sockaddr(fd, &sa, &key);
    route_t **at = find(self, &key);
    if (*at == NULL) Py_RETURN_FALSE;
    route_t *r = *at;
    *at = r->next;
    free_route(r);
    self->routes--;
    Py_RETURN_TRUE;
}

static PyObject *Plane_backlog(Plane *self, PyObject *args) {
    int fd, on;
    if (!PyArg_ParseTuple(args, "ip", &fd, &on)) return NULL;
    for (int i = 0; i < self->n_backlogged; i++) {
        if (self->backlogged[i] == fd) {
            if (!on) self->backlogged[i] = self->backlogged[--self->n_backlogged];
            Py_RETURN_NONE;
        }
    }
    if (on) {
        if (self->n_backlogged == MAX_PORTS) {
            PyErr_SetString(PyExc_OverflowError, "too many backlogged sockets");
            return NULL;
        }
        self->backlogged[self->n_backlogged++] = fd;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ the packet path */

static int unprotect_reason(int status) {
    switch (status) {
    case 7: return D_AUTH;                  /* srtp_err_status_auth_fail */
    case 9: case 10: case 26: return D_REPLAY; /* replay_fail, replay_old, pkt_idx_old */
    default: return D_ERROR;
    }
}

static int is_backlogged(Plane *self, int fd) {
    for (int i = 0; i < self->n_backlogged; i++)
        if (self->backlogged[i] == fd) return 1;
    return 0;
}

/* A send the socket refused for now: handed back to Python, which queues it or drops it. */
static int hand_back_send(PyObject **sends, const receiver_t *x, const uint8_t *out, int len) {
    if (*sends == NULL && (*sends = PyList_New(0)) == NULL) return -1;
    PyObject *item = Py_BuildValue("(iy#O)", x->fd, (const char *)out, (Py_ssize_t)len,
                                   x->address);
    if (item == NULL) return -1;
    int failed = PyList_Append(*sends, item);
    Py_DECREF(item);
    return failed;
}

/* Relay one routed SRTP packet of `len` bytes in self->in. -1: a Python error. */
static int relay(Plane *self, route_t *r, int len, PyObject **sends) {
    counters_t *in = &self->counters[r->slot];
    /* the sender's SSRC before libsrtp sees the packet: a session that takes any SSRC
     * keeps a stream for each one it authenticates, for ever (the header is
     * authenticated, never encrypted: a packet that passes here and fails the tag is
     * dropped by unprotect) */
    if (memcmp(self->in + 8, r->ssrc, 4) != 0) {
        in->drops[D_SSRC]++;
        return 0;
    }
    int clear = len;
    int status = len > self->in_limit ? -1 : self->unprotect(r->ctx, self->in, &clear);
    if (status) {
        in->drops[status < 0 ? D_ERROR : unprotect_reason(status)]++;
        return 0;
    }
    in->packets_in++;
    in->bytes_in += (unsigned long long)len;
    self->relayed++;
    for (Py_ssize_t i = 0; i < r->count; i++) {
        receiver_t *x = &r->receivers[i];
        counters_t *c = &self->counters[x->slot];
        if (x->no_consent) {
            c->drops[D_NO_CONSENT]++;
            continue;
        }
        uint8_t *out = self->in; /* the last one protects the clear packet where it lies */
        if (i != r->last) {
            out = self->out;
            memcpy(out, self->in, (size_t)clear);
        }
        int sealed = clear;
        if (clear > self->out_limit || self->protect(x->ctx, out, &sealed)) {
            c->drops[D_PROTECT_ERROR]++;
            continue;
        }
        /* a socket Python queues for keeps its order: the send goes to its queue */
        int queued = self->n_backlogged && is_backlogged(self, x->fd);
        if (queued || sendto(x->fd, out, (size_t)sealed, 0, (struct sockaddr *)&x->to,
                             x->to_len) < 0) {
            if (queued || errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!queued && self->n_backlogged < MAX_PORTS) /* Python queues it: */
                    self->backlogged[self->n_backlogged++] = x->fd; /* the rest follow */
                if (hand_back_send(sends, x, out, sealed) < 0) return -1;
            } else {
                self->udp_errors++; /* as UdpListener counts an OSError on send */
            }
        }
        c->packets_out++;
        c->bytes_out += (unsigned long long)sealed;
    }
    return 0;
}

static double seconds(const struct timespec *a, const struct timespec *b) {
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void observe(Plane *self, double value) {
    int b = 0;
    while (b < self->n_bounds && value > self->bounds[b]) b++;
    self->bucket_counts[b]++;
    self->timed_sum += value;
}

static int append_packet(PyObject **packets, const uint8_t *data, ssize_t len,
                         const struct sockaddr_storage *src) {
    if (*packets == NULL && (*packets = PyList_New(0)) == NULL) return -1;
    PyObject *address = py_from_sockaddr(src);
    if (address == NULL) return -1;
    PyObject *item = Py_BuildValue("(y#N)", (const char *)data, (Py_ssize_t)len, address);
    if (item == NULL) return -1;
    int failed = PyList_Append(*packets, item);
    Py_DECREF(item);
    return failed;
}

static held_t *held_of(Plane *self, int fd) {
    for (int i = 0; i < MAX_PORTS; i++)
        if (self->held[i].fd == fd) return &self->held[i];
    return NULL;
}

/* The routed SRTP packet of `n` bytes in self->in from `src`, or NULL. */
static route_t *route_of(Plane *self, int fd, ssize_t n, const struct sockaddr_storage *src) {
    if (n < 12 || self->in[0] < 128 || self->in[0] >= 192 ||
        (self->in[1] >= 192 && self->in[1] < 224)) /* SRTP, not SRTCP */
        return NULL;
    key_t_ key;
    return key_from_sockaddr(fd, src, &key) == 0 ? *find(self, &key) : NULL;
}

static int relay_timed(Plane *self, route_t *r, int len, PyObject **sends) {
    struct timespec started, done;
    int timed = self->every > 0 && --self->untimed <= 0;
    if (timed) {
        self->untimed = self->every;
        clock_gettime(CLOCK_MONOTONIC, &started);
    }
    if (relay(self, r, len, sends) < 0) return -1;
    if (timed) {
        clock_gettime(CLOCK_MONOTONIC, &done);
        observe(self, seconds(&started, &done));
    }
    return 0;
}

/* drain(fd, budget) -> (packets, sends, held): read `fd` until it would block (at most
 * `budget` datagrams). packets: [(data, address)] for the engine, in arrival order; sends:
 * [(fd, data, address)] the sockets refused for now (either None when empty); held: a
 * routed packet that came after packets is held for the next drain of `fd`, which
 * relays it first: call it again once packets are handled. None: nothing for Python. */
static PyObject *Plane_drain(Plane *self, PyObject *args) {
    int fd, budget;
    if (!ready(self) || !PyArg_ParseTuple(args, "ii", &fd, &budget)) return NULL;
    PyObject *packets = NULL, *sends = NULL;
    int holding = 0;
    int gc = PyGC_Disable(); /* a collection runs finalizers: Python code that may route */
    held_t *held = fd >= 0 ? held_of(self, fd) : NULL;
    for (int i = 0; i < budget; i++) {
        struct sockaddr_storage src;
        ssize_t n;
        if (held != NULL) { /* what the last drain held: first, by today's routes */
            memcpy(self->in, held->data, (size_t)held->len);
            n = held->len;
            src = held->src;
            held->fd = -1;
            held = NULL;
        } else {
            socklen_t sl = sizeof src;
            n = recvfrom(fd, self->in, MAX_DATAGRAM, 0, (struct sockaddr *)&src, &sl);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK) self->udp_errors++;
                break;
            }
        }
        route_t *r = route_of(self, fd, n, &src);
        if (r == NULL) {
            if (append_packet(&packets, self->in, n, &src) < 0) goto fail;
            continue;
        }
        if (packets != NULL) { /* it must not overtake them: held for the next drain */
            held_t *slot = held_of(self, -1);
            if (slot != NULL) {
                slot->fd = fd;
                slot->len = (int)n;
                slot->src = src;
                memcpy(slot->data, self->in, (size_t)n);
                holding = 1;
                break;
            }
            /* no free slot (more ports held than a plane serves): relayed now */
        }
        if (relay_timed(self, r, (int)n, &sends) < 0) goto fail;
    }
    if (gc) PyGC_Enable();
    if (packets == NULL && sends == NULL) Py_RETURN_NONE;
    return Py_BuildValue("(NNO)", packets ? packets : Py_NewRef(Py_None),
                         sends ? sends : Py_NewRef(Py_None), holding ? Py_True : Py_False);
fail:
    if (gc) PyGC_Enable();
    Py_XDECREF(packets);
    Py_XDECREF(sends);
    return NULL;
}

/* open_port(sock): a port the plane reads from now on (by its descriptor: nothing kept). */
static PyObject *Plane_open_port(Plane *self, PyObject *sock) {
    Py_RETURN_NONE;
}

/* forget_port(fd): the port closes; a datagram held for it is dropped with it. */
static PyObject *Plane_forget_port(Plane *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd)) return NULL;
    held_t *held = held_of(self, fd);
    if (fd >= 0 && held != NULL) held->fd = -1;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ reading */

/* take() -> [(slot, packets_in, bytes_in, packets_out, bytes_out, {reason: n})] for every
 * slot that counted something since the last take; those counters start again at 0. */
static PyObject *Plane_take(Plane *self, PyObject *unused) {
    PyObject *list = PyList_New(0);
    if (list == NULL) return NULL;
    int gc = PyGC_Disable(); /* `c` points into counters, which a route() may move */
    static const counters_t zero;
    for (Py_ssize_t s = 0; s < self->slots; s++) {
        counters_t *c = &self->counters[s];
        if (memcmp(c, &zero, sizeof zero) == 0) continue;
        PyObject *drops = PyDict_New();
        if (drops == NULL) goto fail;
        for (int d = 0; d < N_DROPS; d++) {
            if (!c->drops[d]) continue;
            PyObject *n = PyLong_FromUnsignedLongLong(c->drops[d]);
            if (n == NULL || PyDict_SetItemString(drops, DROP_NAMES[d], n) < 0) {
                Py_XDECREF(n);
                Py_DECREF(drops);
                goto fail;
            }
            Py_DECREF(n);
        }
        PyObject *item = Py_BuildValue("(nKKKKN)", s, c->packets_in, c->bytes_in,
                                       c->packets_out, c->bytes_out, drops);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
        memset(c, 0, sizeof *c);
    }
    if (gc) PyGC_Enable();
    return list;
fail:
    if (gc) PyGC_Enable();
    Py_DECREF(list);
    return NULL;
}

/* take_udp_errors() -> sends that failed with another error than "would block" */
static PyObject *Plane_take_udp_errors(Plane *self, PyObject *unused) {
    unsigned long long n = self->udp_errors;
    self->udp_errors = 0;
    return PyLong_FromUnsignedLongLong(n);
}

/* timing() -> ([count per bucket, +Inf last], sum): every packet timed here so far */
static PyObject *Plane_timing(Plane *self, PyObject *unused) {
    PyObject *counts = PyList_New(self->n_bounds + 1);
    if (counts == NULL) return NULL;
    for (int b = 0; b <= self->n_bounds; b++) {
        PyObject *n = PyLong_FromUnsignedLongLong(self->bucket_counts[b]);
        if (n == NULL) {
            Py_DECREF(counts);
            return NULL;
        }
        PyList_SET_ITEM(counts, b, n);
    }
    return Py_BuildValue("(Nd)", counts, self->timed_sum);
}

static PyObject *Plane_get_routes(Plane *self, void *closure) {
    return PyLong_FromSize_t(self->routes);
}

static PyObject *Plane_get_relayed(Plane *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->relayed);
}

/* ------------------------------------------------------------------ the type */

/* Every argument is checked before any is kept, and a plane is initialised once: a second
 * __init__ (whatever its arguments) is refused, so the function pointers a route is
 * relayed with are the ones the plane was made with. */
static int Plane_init(Plane *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"unprotect", "protect", "in_limit", "out_limit", "every",
                            "bounds", NULL};
    if (self->table != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Plane is initialised once");
        return -1;
    }
    PyObject *unprotect, *protect, *bounds;
    int in_limit, out_limit;
    long every;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOiilO", names, &unprotect, &protect,
                                     &in_limit, &out_limit, &every, &bounds))
        return -1;
    void *un, *pro;
    if (pointer_of(unprotect, &un) < 0 || pointer_of(protect, &pro) < 0) return -1;
    if (in_limit <= 0 || in_limit > MAX_DATAGRAM || out_limit <= 0 || out_limit > in_limit) {
        PyErr_SetString(PyExc_ValueError, "limits must be within a datagram");
        return -1;
    }
    PyObject *seq = PySequence_Fast(bounds, "bounds must be a sequence");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_BUCKETS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "too many buckets");
        return -1;
    }
    double values[MAX_BUCKETS];
    for (Py_ssize_t i = 0; i < n; i++) values[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
    Py_DECREF(seq);
    if (PyErr_Occurred()) return -1;
    route_t **table = PyMem_Calloc(64, sizeof *table);
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->unprotect = (srtp_call)un;
    self->protect = (srtp_call)pro;
    self->in_limit = in_limit;
    self->out_limit = out_limit;
    self->every = every;
    memcpy(self->bounds, values, (size_t)n * sizeof *values);
    self->n_bounds = (int)n;
    self->untimed = every;
    for (int i = 0; i < MAX_PORTS; i++) self->held[i].fd = -1;
    self->buckets = 64;
    self->table = table;
    return 0;
}

static void Plane_dealloc(Plane *self) {
    for (size_t b = 0; self->table != NULL && b < self->buckets; b++) {
        route_t *r = self->table[b];
        while (r != NULL) {
            route_t *next = r->next;
            free_route(r);
            r = next;
        }
    }
    PyMem_Free(self->table);
    PyMem_Free(self->counters);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Plane_methods[] = {
    {"route", (PyCFunction)Plane_route, METH_VARARGS, "Relay packets from one source here."},
    {"unroute", (PyCFunction)Plane_unroute, METH_VARARGS, "Hand a source back to Python."},
    {"backlog", (PyCFunction)Plane_backlog, METH_VARARGS,
     "Mark a socket whose sends Python queues (True) or not (False)."},
    {"drain", (PyCFunction)Plane_drain, METH_VARARGS, "Read a socket until it would block."},
    {"open_port", (PyCFunction)Plane_open_port, METH_O, "A port the plane reads."},
    {"forget_port", (PyCFunction)Plane_forget_port, METH_VARARGS,
     "A port closes: drop what is held for it."},
    {"take", (PyCFunction)Plane_take, METH_NOARGS, "Counters per slot since the last take."},
    {"take_udp_errors", (PyCFunction)Plane_take_udp_errors, METH_NOARGS,
     "Send and receive errors since the last take."},
    {"timing", (PyCFunction)Plane_timing, METH_NOARGS, "The sampled relay time histogram."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Plane_getset[] = {
    {"routes", (getter)Plane_get_routes, NULL, "Sources relayed here.", NULL},
    {"relayed", (getter)Plane_get_relayed, NULL, "Packets relayed here.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PlaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media_node._plane.Plane",
    .tp_basicsize = sizeof(Plane),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The UDP data plane: routed SRTP relayed without Python.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Plane_init,
    .tp_dealloc = (destructor)Plane_dealloc,
    .tp_methods = Plane_methods,
    .tp_getset = Plane_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "media_node._plane",
    .m_doc = "The media node's UDP data plane.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__plane(void) {
    if (PyType_Ready(&PlaneType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Plane", (PyObject *)&PlaneType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_DATAGRAM", MAX_DATAGRAM) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PORTS", MAX_PORTS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
