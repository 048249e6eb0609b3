/* md5 and sha256 of several files at once, one file a SIMD lane, each file read once.
 *
 * An export publishes every shard with its md5 (the wids index's ``md5sum``) and its sha256
 * (``sha256sums.txt``). Both hashes are long chains of dependent steps, so a single stream
 * runs at about 1.2 ns a byte for md5 and 0.5 for sha256 (OpenSSL, SHA-NI included): about as
 * much CPU as the inflate of the part that filled the shard. The shards a part completes are
 * independent streams, though, so up to 16 of them go through the same steps side by side, one
 * 32-bit lane each: with AVX-512 one instruction does a step for all 16, with AVX2 two, with
 * the x86-64 baseline (SSE2) four, in about the time one stream's step takes. A lane whose file
 * ends is given the next file waiting.
 *
 * The lanes are GCC vector extensions of 16 x 32 bits; ``target_clones`` compiles the block
 * function for AVX-512, AVX2 and the baseline and picks one when the module is loaded. Files
 * are read with read(2) in big chunks, the GIL released; errors come back as OSError naming
 * the file. Tested against hashlib on every length around the block and padding edges.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LANES 16
#define BLOCK 64
#define CHUNK (1 << 20) /* bytes read into a lane at a time */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "little-endian hosts only: md5's words are the bytes as loaded (the build is optional)"
#endif

typedef uint32_t lanes_t __attribute__((vector_size(4 * LANES)));
#define LIST(...) {__VA_ARGS__}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif
#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

#define F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define H(x, y, z) ((x) ^ (y) ^ (z))
#define I(x, y, z) ((y) ^ ((x) | ~(z)))
#define ROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))
#define STEP(f, a, b, c, d, k, t, s) \
    a += f(b, c, d) + w[k] + (uint32_t)(t); \
    a = ROTL(a, s) + b;

/* One 64-byte block of every lane: ``state`` is a, b, c, d of the 16 lanes (4 x 16 words),
 * ``w`` the block's 16 little-endian words, each a vector of the 16 lanes' (w[k][lane]). */
INLINE void md5_blocks(uint32_t *state, const lanes_t *w)
{
    lanes_t a, b, c, d;
    memcpy(&a, state, sizeof a);
    memcpy(&b, state + LANES, sizeof b);
    memcpy(&c, state + 2 * LANES, sizeof c);
    memcpy(&d, state + 3 * LANES, sizeof d);
    lanes_t a0 = a, b0 = b, c0 = c, d0 = d;

    STEP(F, a, b, c, d, 0, 0xd76aa478, 7)
    STEP(F, d, a, b, c, 1, 0xe8c7b756, 12)
    STEP(F, c, d, a, b, 2, 0x242070db, 17)
    STEP(F, b, c, d, a, 3, 0xc1bdceee, 22)
    STEP(F, a, b, c, d, 4, 0xf57c0faf, 7)
    STEP(F, d, a, b, c, 5, 0x4787c62a, 12)
    STEP(F, c, d, a, b, 6, 0xa8304613, 17)
    STEP(F, b, c, d, a, 7, 0xfd469501, 22)
    STEP(F, a, b, c, d, 8, 0x698098d8, 7)
    STEP(F, d, a, b, c, 9, 0x8b44f7af, 12)
    STEP(F, c, d, a, b, 10, 0xffff5bb1, 17)
    STEP(F, b, c, d, a, 11, 0x895cd7be, 22)
    STEP(F, a, b, c, d, 12, 0x6b901122, 7)
    STEP(F, d, a, b, c, 13, 0xfd987193, 12)
    STEP(F, c, d, a, b, 14, 0xa679438e, 17)
    STEP(F, b, c, d, a, 15, 0x49b40821, 22)

    STEP(G, a, b, c, d, 1, 0xf61e2562, 5)
    STEP(G, d, a, b, c, 6, 0xc040b340, 9)
    STEP(G, c, d, a, b, 11, 0x265e5a51, 14)
    STEP(G, b, c, d, a, 0, 0xe9b6c7aa, 20)
    STEP(G, a, b, c, d, 5, 0xd62f105d, 5)
    STEP(G, d, a, b, c, 10, 0x02441453, 9)
    STEP(G, c, d, a, b, 15, 0xd8a1e681, 14)
    STEP(G, b, c, d, a, 4, 0xe7d3fbc8, 20)
    STEP(G, a, b, c, d, 9, 0x21e1cde6, 5)
    STEP(G, d, a, b, c, 14, 0xc33707d6, 9)
    STEP(G, c, d, a, b, 3, 0xf4d50d87, 14)
    STEP(G, b, c, d, a, 8, 0x455a14ed, 20)
    STEP(G, a, b, c, d, 13, 0xa9e3e905, 5)
    STEP(G, d, a, b, c, 2, 0xfcefa3f8, 9)
    STEP(G, c, d, a, b, 7, 0x676f02d9, 14)
    STEP(G, b, c, d, a, 12, 0x8d2a4c8a, 20)

    STEP(H, a, b, c, d, 5, 0xfffa3942, 4)
    STEP(H, d, a, b, c, 8, 0x8771f681, 11)
    STEP(H, c, d, a, b, 11, 0x6d9d6122, 16)
    STEP(H, b, c, d, a, 14, 0xfde5380c, 23)
    STEP(H, a, b, c, d, 1, 0xa4beea44, 4)
    STEP(H, d, a, b, c, 4, 0x4bdecfa9, 11)
    STEP(H, c, d, a, b, 7, 0xf6bb4b60, 16)
    STEP(H, b, c, d, a, 10, 0xbebfbc70, 23)
    STEP(H, a, b, c, d, 13, 0x289b7ec6, 4)
    STEP(H, d, a, b, c, 0, 0xeaa127fa, 11)
    STEP(H, c, d, a, b, 3, 0xd4ef3085, 16)
    STEP(H, b, c, d, a, 6, 0x04881d05, 23)
    STEP(H, a, b, c, d, 9, 0xd9d4d039, 4)
    STEP(H, d, a, b, c, 12, 0xe6db99e5, 11)
    STEP(H, c, d, a, b, 15, 0x1fa27cf8, 16)
    STEP(H, b, c, d, a, 2, 0xc4ac5665, 23)

    STEP(I, a, b, c, d, 0, 0xf4292244, 6)
    STEP(I, d, a, b, c, 7, 0x432aff97, 10)
    STEP(I, c, d, a, b, 14, 0xab9423a7, 15)
    STEP(I, b, c, d, a, 5, 0xfc93a039, 21)
    STEP(I, a, b, c, d, 12, 0x655b59c3, 6)
    STEP(I, d, a, b, c, 3, 0x8f0ccc92, 10)
    STEP(I, c, d, a, b, 10, 0xffeff47d, 15)
    STEP(I, b, c, d, a, 1, 0x85845dd1, 21)
    STEP(I, a, b, c, d, 8, 0x6fa87e4f, 6)
    STEP(I, d, a, b, c, 15, 0xfe2ce6e0, 10)
    STEP(I, c, d, a, b, 6, 0xa3014314, 15)
    STEP(I, b, c, d, a, 13, 0x4e0811a1, 21)
    STEP(I, a, b, c, d, 4, 0xf7537e82, 6)
    STEP(I, d, a, b, c, 11, 0xbd3af235, 10)
    STEP(I, c, d, a, b, 2, 0x2ad7d2bb, 15)
    STEP(I, b, c, d, a, 9, 0xeb86d391, 21)

    a += a0;
    b += b0;
    c += c0;
    d += d0;
    memcpy(state, &a, sizeof a);
    memcpy(state + LANES, &b, sizeof b);
    memcpy(state + 2 * LANES, &c, sizeof c);
    memcpy(state + 3 * LANES, &d, sizeof d);
}

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define BIG_S0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BIG_S1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SMALL_S0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SMALL_S1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))
#define CH(e, f, g) ((g) ^ ((e) & ((f) ^ (g))))
#define MAJ(a, b, c) (((a) & (b)) | ((c) & ((a) | (b))))

/* The same for sha256: ``state`` is a..h of the 16 lanes (8 x 16 words), ``w`` the block's
 * 16 big-endian words (its message schedule is worked out in it). */
INLINE void sha256_blocks(uint32_t *state, lanes_t *w)
{
    lanes_t s[8];
    memcpy(s, state, sizeof s);
    lanes_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 64
#endif
    for (int t = 0; t < 64; t++) {
        if (t >= 16)
            w[t & 15] += SMALL_S1(w[(t - 2) & 15]) + w[(t - 7) & 15] + SMALL_S0(w[(t - 15) & 15]);
        lanes_t t1 = h + BIG_S1(e) + CH(e, f, g) + K256[t] + w[t & 15];
        lanes_t t2 = BIG_S0(a) + MAJ(a, b, c);
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s[0] += a;
    s[1] += b;
    s[2] += c;
    s[3] += d;
    s[4] += e;
    s[5] += f;
    s[6] += g;
    s[7] += h;
    memcpy(state, s, sizeof s);
}

/* The 16 x 16 words of 16 blocks (a row a lane) turned into 16 vectors of a word of every lane:
 * four rounds of swapping the off-diagonal halves of ever smaller squares, one two-vector
 * shuffle a row each round. */
#define SWAP_ROWS(d, lo, hi) \
    for (int i = 0; i < LANES; i++) \
        if (!(i & (d))) { \
            lanes_t top = r[i], bottom = r[i + (d)]; \
            r[i] = __builtin_shuffle(top, bottom, (lanes_t)lo); \
            r[i + (d)] = __builtin_shuffle(top, bottom, (lanes_t)hi); \
        }

INLINE void transpose(lanes_t *r)
{
    SWAP_ROWS(8, LIST(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
              LIST(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
    SWAP_ROWS(4, LIST(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27),
              LIST(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31))
    SWAP_ROWS(2, LIST(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
              LIST(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
    SWAP_ROWS(1, LIST(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30),
              LIST(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31))
}

/* Both hashes of the next block of every lane (``blocks[lane]``), compiled once for each target.
 * A lane at its last block gets sha256's big-endian length in bits (``sha_bits[lane]``, when
 * ``last[lane]``) in place of the little-endian one md5's padding wrote. */
CLONES static void hash_blocks(uint32_t *md5_state, uint32_t *sha_state, const unsigned char *const *blocks,
                               const int *last, const uint64_t *sha_bits)
{
    lanes_t w[16];
    for (int i = 0; i < LANES; i++)
        memcpy(&w[i], blocks[i], sizeof w[i]);
    transpose(w);
    md5_blocks(md5_state, w);
    for (int k = 0; k < 16; k++) /* big-endian words: each word's bytes the other way round */
        w[k] = (ROTL(w[k], 8) & 0x00ff00ffu) | (ROTR(w[k], 8) & 0xff00ff00u);
    for (int i = 0; i < LANES; i++)
        if (last[i]) {
            w[14][i] = (uint32_t)(sha_bits[i] >> 32);
            w[15][i] = (uint32_t)sha_bits[i];
        }
    sha256_blocks(sha_state, w);
}

/* One file going through a lane. */
typedef struct {
    int fd;                /* -1 when the lane has no file */
    Py_ssize_t file;       /* its position in the caller's list */
    uint64_t length;       /* bytes read so far */
    unsigned char *buffer; /* CHUNK bytes, and room for the padding */
    size_t have, at;
    int end, padded;
} Lane;

static const uint32_t MD5_INITIAL[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
static const uint32_t SHA256_INITIAL[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                           0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* The lane's next block, or NULL when it has given its last (padding included). Sets *error
 * to errno when a read fails. The padding (the same for both hashes but for the length's byte
 * order) carries md5's little-endian length: see hash_blocks for sha256's. */
static const unsigned char *next_block(Lane *lane, int *error)
{
    if (lane->have - lane->at >= BLOCK) {
        lane->at += BLOCK;
        return lane->buffer + lane->at - BLOCK;
    }
    if (lane->padded)
        return NULL;
    size_t rest = lane->have - lane->at;
    memmove(lane->buffer, lane->buffer + lane->at, rest);
    lane->have = rest;
    lane->at = 0;
    while (!lane->end && lane->have < CHUNK) {
        ssize_t got = read(lane->fd, lane->buffer + lane->have, CHUNK - lane->have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            *error = errno;
            return NULL;
        }
        if (got == 0)
            lane->end = 1;
        lane->have += (size_t)got;
        lane->length += (uint64_t)got;
    }
    if (lane->have >= BLOCK)
        return next_block(lane, error);
    /* The end: 0x80, zeros to 56 mod 64, the length in bits: one block or two. */
    unsigned char *tail = lane->buffer + lane->have;
    size_t padding = (lane->have < 56 ? 56 : 120) - lane->have;
    tail[0] = 0x80;
    memset(tail + 1, 0, padding - 1);
    uint64_t bits = lane->length * 8;
    for (int i = 0; i < 8; i++)
        tail[padding + i] = (unsigned char)(bits >> (8 * i));
    lane->have += padding + 8;
    lane->padded = 1;
    return next_block(lane, error);
}

typedef struct {
    Py_ssize_t files;
    char **paths;
    unsigned char (*md5)[16];
    unsigned char (*sha256)[32];
    uint64_t *sizes;
    int error;         /* errno of the failure, 0 when none */
    Py_ssize_t failed; /* the file it concerns */
} Job;

typedef struct {
    uint32_t md5[4 * LANES] __attribute__((aligned(64)));
    uint32_t sha[8 * LANES] __attribute__((aligned(64)));
    const unsigned char *blocks[LANES]; /* each lane's next block */
    int last[LANES];                    /* is it the lane's last? */
    uint64_t bits[LANES];               /* then the file's length in bits */
} State;

static int open_next(Job *job, Lane *lane, Py_ssize_t *next, State *state, int i)
{
    lane->fd = -1;
    if (*next >= job->files)
        return 0;
    lane->file = (*next)++;
    do
        lane->fd = open(job->paths[lane->file], O_RDONLY | O_CLOEXEC);
    while (lane->fd < 0 && errno == EINTR);
    if (lane->fd < 0) {
        job->error = errno;
        job->failed = lane->file;
        return -1;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(lane->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    lane->length = 0;
    lane->have = lane->at = 0;
    lane->end = lane->padded = 0;
    for (int k = 0; k < 4; k++)
        state->md5[k * LANES + i] = MD5_INITIAL[k];
    for (int k = 0; k < 8; k++)
        state->sha[k * LANES + i] = SHA256_INITIAL[k];
    return 0;
}

/* The file in lane ``i`` is hashed: its digests, from the lane's words of the states. */
static void finish_file(Job *job, const Lane *lane, const State *state, int i)
{
    for (int k = 0; k < 4; k++) {
        uint32_t v = state->md5[k * LANES + i];
        for (int byte = 0; byte < 4; byte++)
            job->md5[lane->file][4 * k + byte] = (unsigned char)(v >> (8 * byte));
    }
    for (int k = 0; k < 8; k++) {
        uint32_t v = state->sha[k * LANES + i];
        for (int byte = 0; byte < 4; byte++)
            job->sha256[lane->file][4 * k + byte] = (unsigned char)(v >> (24 - 8 * byte));
    }
    job->sizes[lane->file] = lane->length;
}

/* Runs without the GIL. */
static void run(Job *job, Lane *lanes, State *state)
{
    Py_ssize_t next = 0;
    int busy = 0;
    memset(state, 0, sizeof *state);
    for (int i = 0; i < LANES; i++) {
        if (open_next(job, &lanes[i], &next, state, i) < 0)
            return;
        busy += lanes[i].fd >= 0;
    }
    static const unsigned char idle[BLOCK];
    while (busy) {
        for (int i = 0; i < LANES; i++) {
            Lane *lane = &lanes[i];
            state->blocks[i] = idle; /* an idle lane's words do not matter */
            state->last[i] = 0;
            while (lane->fd >= 0) {
                int error = 0;
                const unsigned char *block = next_block(lane, &error);
                if (error) {
                    job->error = error;
                    job->failed = lane->file;
                    return;
                }
                if (block != NULL) {
                    state->blocks[i] = block;
                    state->last[i] = lane->padded && lane->at == lane->have;
                    state->bits[i] = lane->length * 8;
                    break;
                }
                finish_file(job, lane, state, i);
                close(lane->fd);
                if (open_next(job, lane, &next, state, i) < 0)
                    return;
                busy -= lane->fd < 0;
            }
        }
        if (busy)
            hash_blocks(state->md5, state->sha, state->blocks, state->last, state->bits);
    }
}

static void close_lanes(Lane *lanes)
{
    for (int i = 0; i < LANES; i++) {
        if (lanes[i].fd >= 0)
            close(lanes[i].fd);
        free(lanes[i].buffer);
    }
}

PyDoc_STRVAR(hash_files_doc,
"hash_files(paths) -> list of (size, md5 digest, sha256 digest)\n\n"
"Both hashes of every file in ``paths`` (str, bytes or os.PathLike), each file read once, the\n"
"files side by side, one a SIMD lane, with the GIL released. Raises OSError naming the first\n"
"file that cannot be read.");

static PyObject *hash_files(PyObject *self, PyObject *arg)
{
    (void)self;
    PyObject *sequence = PySequence_Fast(arg, "hash_files() takes a sequence of paths");
    if (sequence == NULL)
        return NULL;
    Py_ssize_t files = PySequence_Fast_GET_SIZE(sequence);
    size_t slots = files ? (size_t)files : 1;
    PyObject **encoded = PyMem_Calloc(slots, sizeof *encoded);
    Job job = {files, PyMem_Calloc(slots, sizeof(char *)), PyMem_Calloc(slots, 16), PyMem_Calloc(slots, 32),
               PyMem_Calloc(slots, sizeof(uint64_t)), 0, -1};
    State *state = PyMem_Malloc(sizeof *state);
    Lane lanes[LANES];
    PyObject *result = NULL;
    for (int i = 0; i < LANES; i++) {
        lanes[i].fd = -1;
        lanes[i].buffer = NULL;
    }
    if (encoded == NULL || job.paths == NULL || job.md5 == NULL || job.sha256 == NULL || job.sizes == NULL
        || state == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t f = 0; f < files; f++) {
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(sequence, f), &encoded[f]))
            goto done;
        job.paths[f] = PyBytes_AS_STRING(encoded[f]);
    }
    for (int i = 0; i < LANES && i < files; i++) {
        lanes[i].buffer = malloc(CHUNK + 2 * BLOCK);
        if (lanes[i].buffer == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    run(&job, lanes, state);
    Py_END_ALLOW_THREADS
    if (job.error) {
        errno = job.error;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, PySequence_Fast_GET_ITEM(sequence, job.failed));
        goto done;
    }
    result = PyList_New(files);
    for (Py_ssize_t f = 0; result != NULL && f < files; f++) {
        PyObject *item = Py_BuildValue("(Ky#y#)", (unsigned long long)job.sizes[f], (const char *)job.md5[f],
                                       (Py_ssize_t)16, (const char *)job.sha256[f], (Py_ssize_t)32);
        if (item == NULL)
            Py_CLEAR(result);
        else
            PyList_SET_ITEM(result, f, item);
    }
done:
    close_lanes(lanes);
    for (Py_ssize_t f = 0; encoded != NULL && f < files; f++)
        Py_XDECREF(encoded[f]);
    PyMem_Free(encoded);
    PyMem_Free(job.paths);
    PyMem_Free(job.md5);
    PyMem_Free(job.sha256);
    PyMem_Free(job.sizes);
    PyMem_Free(state);
    Py_DECREF(sequence);
    return result;
}

static PyMethodDef methods[] = {
    {"hash_files", hash_files, METH_O, hash_files_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hashlanes",
    "md5 and sha256 of several files at once, one file a SIMD lane (see _hashlanes.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hashlanes(void)
{
    return PyModule_Create(&module);
}
