/* md5 of several files at once, one file a SIMD lane.
 *
 * An export publishes every shard with its md5 (the wids index's ``md5sum``). MD5 is one long
 * chain of dependent steps, so a single stream runs at about 1.1-1.4 ns a byte whatever the
 * core (OpenSSL's assembly included): as much CPU as the whole inflate of the part that filled
 * the shard. The shards a part completes are independent streams, though, so 16 of them go
 * through the same steps side by side, one 32-bit lane each: with AVX-512 one instruction
 * does a step for all 16, with AVX2 two, and with the x86-64 baseline (SSE2) four, in the time
 * one stream's step takes. A lane whose file ends is given the next file waiting.
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

typedef uint32_t lanes_t __attribute__((vector_size(4 * LANES)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
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
 * ``w`` the block's 16 words, each of the 16 lanes (w[k][lane]). */
CLONES static void md5_blocks(uint32_t *state, const uint32_t *words)
{
    lanes_t a, b, c, d, w[16];
    memcpy(&a, state, sizeof a);
    memcpy(&b, state + LANES, sizeof b);
    memcpy(&c, state + 2 * LANES, sizeof c);
    memcpy(&d, state + 3 * LANES, sizeof d);
    memcpy(w, words, sizeof w);
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

/* One file going through a lane. */
typedef struct {
    int fd;         /* -1 when the lane has no file */
    Py_ssize_t file; /* its position in the caller's list */
    uint64_t length; /* bytes read so far */
    unsigned char *buffer; /* CHUNK bytes, and room for the padding */
    size_t have, at;
    int end, padded;
} Lane;

static const uint32_t INITIAL[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};

/* The lane's next block, or NULL when it has given its last (padding included). Sets *error
 * to errno when a read fails. */
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
    /* The end: 0x80, zeros to 56 mod 64, the length in bits (little-endian): one block or two. */
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

static inline uint32_t load_le32(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t word;
    memcpy(&word, p, sizeof word);
    return word;
#else
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
#endif
}

typedef struct {
    Py_ssize_t files;
    char **paths;
    unsigned char (*digests)[16];
    int error;              /* errno of the failure, 0 when none */
    Py_ssize_t failed;      /* the file it concerns */
} Job;

static int open_next(Job *job, Lane *lane, Py_ssize_t *next, uint32_t *state, int i)
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
        state[k * LANES + i] = INITIAL[k];
    return 0;
}

/* Runs without the GIL. */
static void run(Job *job, Lane *lanes)
{
    uint32_t state[4 * LANES] __attribute__((aligned(64)));
    uint32_t words[16 * LANES] __attribute__((aligned(64))) = {0};
    static const unsigned char idle[BLOCK];
    Py_ssize_t next = 0;
    int busy = 0;
    memset(state, 0, sizeof state);
    for (int i = 0; i < LANES; i++) {
        if (open_next(job, &lanes[i], &next, state, i) < 0)
            return;
        busy += lanes[i].fd >= 0;
    }
    while (busy) {
        for (int i = 0; i < LANES; i++) {
            Lane *lane = &lanes[i];
            const unsigned char *block = idle;
            while (lane->fd >= 0) {
                int error = 0;
                block = next_block(lane, &error);
                if (error) {
                    job->error = error;
                    job->failed = lane->file;
                    return;
                }
                if (block != NULL)
                    break;
                for (int k = 0; k < 4; k++) { /* the file is hashed: its digest, then the next file */
                    uint32_t v = state[k * LANES + i];
                    for (int byte = 0; byte < 4; byte++)
                        job->digests[lane->file][4 * k + byte] = (unsigned char)(v >> (8 * byte));
                }
                close(lane->fd);
                if (open_next(job, lane, &next, state, i) < 0)
                    return;
                block = idle;
                busy -= lane->fd < 0;
            }
            if (block != idle) /* an idle lane's words do not matter */
                for (int k = 0; k < 16; k++)
                    words[k * LANES + i] = load_le32(block + 4 * k);
        }
        if (busy)
            md5_blocks(state, words);
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

PyDoc_STRVAR(md5_files_doc,
"md5_files(paths) -> list of 16-byte digests\n\n"
"The md5 of every file in ``paths`` (str, bytes or os.PathLike), computed side by side, one file\n"
"a SIMD lane, with the GIL released. Raises OSError naming the first file that cannot be read.");

static PyObject *md5_files(PyObject *self, PyObject *arg)
{
    PyObject *sequence = PySequence_Fast(arg, "md5_files() takes a sequence of paths");
    if (sequence == NULL)
        return NULL;
    Py_ssize_t files = PySequence_Fast_GET_SIZE(sequence);
    PyObject **encoded = PyMem_Calloc(files ? files : 1, sizeof *encoded);
    Job job = {files, PyMem_Calloc(files ? files : 1, sizeof(char *)),
               PyMem_Calloc(files ? files : 1, 16), 0, -1};
    Lane lanes[LANES];
    PyObject *result = NULL;
    for (int i = 0; i < LANES; i++) {
        lanes[i].fd = -1;
        lanes[i].buffer = NULL;
    }
    if (encoded == NULL || job.paths == NULL || job.digests == NULL) {
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
    run(&job, lanes);
    Py_END_ALLOW_THREADS
    if (job.error) {
        errno = job.error;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, PySequence_Fast_GET_ITEM(sequence, job.failed));
        goto done;
    }
    result = PyList_New(files);
    for (Py_ssize_t f = 0; result != NULL && f < files; f++) {
        PyObject *digest = PyBytes_FromStringAndSize((const char *)job.digests[f], 16);
        if (digest == NULL)
            Py_CLEAR(result);
        else
            PyList_SET_ITEM(result, f, digest);
    }
done:
    close_lanes(lanes);
    for (Py_ssize_t f = 0; encoded != NULL && f < files; f++)
        Py_XDECREF(encoded[f]);
    PyMem_Free(encoded);
    PyMem_Free(job.paths);
    PyMem_Free(job.digests);
    Py_DECREF(sequence);
    return result;
}

static PyMethodDef methods[] = {
    {"md5_files", md5_files, METH_O, md5_files_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_md5lanes",
    "md5 of several files at once, one file a SIMD lane (see _md5lanes.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__md5lanes(void)
{
    return PyModule_Create(&module);
}
