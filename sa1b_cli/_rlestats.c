/* Area and bounding box of COCO compressed RLE masks, straight from their strings,
 * and the columns of SA-1B annotation objects around them.
 *
 * A deep verify reads ~100 masks of ~650 characters per SA-1B image. Decoding a
 * string into counts (pycocotools' rleFrString) and then computing area and bbox
 * in numpy costs about a millisecond per image; one pass over the characters that
 * keeps only a running (column, row) position costs a tenth of that. No bitmap, no
 * array of counts, and no division in the common case (a run that ends in the same
 * or the next column).
 *
 * Only well-formed masks are taken (see mask_stats_one): anything unusual makes
 * mask_stats return False and the caller falls back to the general decoder in
 * rle.py, which finds and names the problem. On what it takes, this gives exactly
 * what pycocotools' rleArea and rleToBbox (2.0.7+) give.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* The same limits as rle.py's pycocotools fast path: below 2**29 pixels every valid
 * count and every difference of two fit 6 groups (30 bits with the sign). */
#define FAST_PIXELS (((int64_t)1) << 29)
#define MAX_GROUPS 6

#if defined(__GNUC__)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define UNLIKELY(x) (x)
#endif

/* A number of several 5-bit groups (rare: most runs differ from the run two places
 * back by less than 16). ``c`` is its first character minus 48, with the "more" bit
 * set. The caller has seen that the string ends on a terminating character, so the
 * loop stays inside it. Sets *bad on a number of more than MAX_GROUPS groups. */
static int64_t long_number(const unsigned char **at, unsigned c, int *bad)
{
    const unsigned char *p = *at;
    int64_t value = c & 0x1fu;
    int k = 1;
    do {
        c = (unsigned)*p++ - 48u;
        value |= (int64_t)(c & 0x1fu) << (5 * k);
        k++;
    } while ((c & 0x20u) && k < MAX_GROUPS);
    if (c & 0x20u) { /* a seventh group follows */
        *bad = 1;
        while ((c & 0x20u))
            c = (unsigned)*p++ - 48u;
    }
    if (c & 0x10u)
        value |= -(((int64_t)1) << (5 * k)); /* sign-extend */
    *at = p;
    return value;
}

/* The next number of the string: one character, mostly (its 5 bits sign-extended). */
static inline int64_t next_number(const unsigned char **at, int *bad)
{
    unsigned c = (unsigned)**at - 48u;
    (*at)++;
    if (UNLIKELY(c & 0x20u))
        return long_number(at, c, bad);
    return ((int64_t)((uint64_t)c << 59)) >> 59;
}

/* One mask: 1 and its area and bbox when it is well formed, 0 when it is not.
 *
 * Counts alternate zeros and ones, so the loop takes them in pairs; the format
 * stores each count from the fourth on as its difference to the count two places
 * back, i.e. to the previous pair's count of the same kind. Checks that cannot
 * fail on sound data (negative runs, empty runs of ones) are accumulated and
 * judged once at the end rather than branched on per run. */
static int mask_stats_one(const unsigned char *s, Py_ssize_t len, int64_t h, int64_t w,
                          int64_t *area_out, double *bbox_out)
{
    if (len == 0 || h < 1 || w < 1 || h >= FAST_PIXELS || w >= FAST_PIXELS || h * w >= FAST_PIXELS)
        return 0;
    unsigned outside = 0; /* any character outside '0'..'o' (a loop the compiler vectorises) */
    for (Py_ssize_t i = 0; i < len; i++)
        outside |= (unsigned char)(s[i] - 48u) > 63u;
    if (outside || (s[len - 1] - 48u) & 0x20u) /* ... or a string ending inside a number */
        return 0;
    const int64_t pixels = h * w;
    const unsigned char *p = s, *const end = s + len;
    int bad = 0;
    int64_t negative = 0; /* ORed runs (runs of ones less one): the sign bit says one was negative, or empty */
    /* Counts 0, 1 and 2 are stored as they are: the first zeros start no chain. */
    int64_t zeros = 0, ones = 0, chain_zeros = 0, chain_zeros_next = 0;
    int64_t area = 0;
    int64_t x = 0, y = 0; /* column and row of the next pixel: x * h + y pixels so far */
    int64_t x_min = INT64_MAX, x_max = 0, y_min = INT64_MAX, y_max = -1;
    int spans = 0; /* some run of ones crosses into another column: y covers the full height */
    while (p < end) {
        zeros = next_number(&p, &bad) + (zeros & chain_zeros);
        chain_zeros = chain_zeros_next;
        chain_zeros_next = -1;
        negative |= zeros;
        y += zeros;
        if (y >= h) { /* mostly into the next column */
            y -= h;
            x++;
            if (UNLIKELY(y >= h)) {
                x += y / h;
                y %= h;
            }
        }
        if (p == end)
            break; /* a trailing run of zeros */
        ones = next_number(&p, &bad) + ones;
        negative |= ones - 1;
        area += ones;
        const int64_t last_row = y + ones - 1; /* the run's last pixel, counted from column x */
        x_min = x < x_min ? x : x_min;
        y_min = y < y_min ? y : y_min;
        y_max = last_row > y_max ? last_row : y_max; /* (overridden below if the run spans) */
        x_max = x;
        y = last_row + 1;
        if (UNLIKELY(y >= h)) {
            if (last_row >= h) {
                spans = 1;
                x_max = x + last_row / h;
            }
            x += y / h;
            y %= h;
        }
    }
    if (bad || negative < 0 || x * h + y != pixels)
        return 0;
    *area_out = area;
    if (area == 0) { /* no run of ones: pycocotools gives [0, 0, 0, 0] */
        bbox_out[0] = bbox_out[1] = bbox_out[2] = bbox_out[3] = 0.0;
    } else {
        if (spans) {
            y_min = 0;
            y_max = h - 1;
        }
        bbox_out[0] = (double)x_min;
        bbox_out[1] = (double)y_min;
        bbox_out[2] = (double)(x_max - x_min + 1);
        bbox_out[3] = (double)(y_max - y_min + 1);
    }
    return 1;
}

static int buffer_holds(Py_buffer *buffer, Py_ssize_t items, Py_ssize_t item_size, const char *name)
{
    if (buffer->len != items * item_size) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, expected %zd", name, buffer->len, items * item_size);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(mask_stats_doc,
"mask_stats(counts, heights, widths, area, bbox) -> bool\n\n"
"Area and bbox of every mask: counts is a list of compressed RLE strings, heights and\n"
"widths contiguous int64 buffers (one per mask); area (int64, one per mask) and bbox\n"
"(float64, four per mask) are written. False as soon as a mask is not well formed\n"
"(not a str, not ASCII, a character outside '0'..'o', a string ending inside a number,\n"
"a number of more than 6 groups, a size of 0 or of 2**29 pixels or more, a negative\n"
"run, an empty run of ones, runs not summing to height x width): the outputs are then\n"
"incomplete and the general decoder must take the batch.");

static PyObject *mask_stats(PyObject *self, PyObject *args)
{
    PyObject *counts;
    Py_buffer heights, widths, area, bbox;
    if (!PyArg_ParseTuple(args, "O!y*y*w*w*", &PyList_Type, &counts, &heights, &widths, &area, &bbox))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = PyList_GET_SIZE(counts);
    if (!buffer_holds(&heights, n, 8, "heights") || !buffer_holds(&widths, n, 8, "widths")
        || !buffer_holds(&area, n, 8, "area") || !buffer_holds(&bbox, n, 32, "bbox"))
        goto done;
    const int64_t *h = (const int64_t *)heights.buf;
    const int64_t *w = (const int64_t *)widths.buf;
    int64_t *area_out = (int64_t *)area.buf;
    double *bbox_out = (double *)bbox.buf;
    int usual = 1;
    for (Py_ssize_t i = 0; i < n && usual; i++) {
        PyObject *item = PyList_GET_ITEM(counts, i);
        Py_ssize_t len;
        const char *text;
        if (!PyUnicode_Check(item) || !(text = PyUnicode_AsUTF8AndSize(item, &len))) {
            PyErr_Clear(); /* e.g. a lone surrogate: the general decoder names it */
            usual = 0;
            break;
        }
        usual = mask_stats_one((const unsigned char *)text, len, h[i], w[i], &area_out[i], &bbox_out[4 * i]);
    }
    result = PyBool_FromLong(usual);
done:
    PyBuffer_Release(&heights);
    PyBuffer_Release(&widths);
    PyBuffer_Release(&area);
    PyBuffer_Release(&bbox);
    return result;
}

/* ------------------------------------------------------------------ annotations */

/* Keys of an SA-1B annotation, interned once: a lookup is then a pointer compare. */
static PyObject *key_segmentation, *key_counts, *key_size, *key_id, *key_area, *key_bbox,
    *key_predicted_iou, *key_stability_score, *key_point_coords, *key_crop_box;

/* An int or a float (exactly: no bool, no subclass) as a double. */
static int number_of(PyObject *value, double *out)
{
    if (!value)
        return 0;
    if (PyFloat_CheckExact(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 1;
    }
    if (PyLong_CheckExact(value)) {
        *out = PyLong_AsDouble(value);
        if (*out == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        return 1;
    }
    return 0;
}

/* An int (exactly) as a double. */
static int integer_of(PyObject *value, double *out)
{
    return value && PyLong_CheckExact(value) && number_of(value, out);
}

/* A list of exactly ``n`` numbers. */
static int numbers_of(PyObject *list, Py_ssize_t n, double *out)
{
    if (!list || !PyList_CheckExact(list) || PyList_GET_SIZE(list) != n)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!number_of(PyList_GET_ITEM(list, i), &out[i]))
            return 0;
    return 1;
}

/* segmentation.size: [height, width], two ints of 64 bits. */
static int size_of(PyObject *list, int64_t *out)
{
    if (!list || !PyList_CheckExact(list) || PyList_GET_SIZE(list) != 2)
        return 0;
    for (Py_ssize_t i = 0; i < 2; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!PyLong_CheckExact(item))
            return 0;
        out[i] = PyLong_AsLongLong(item);
        if (out[i] == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

/* One annotation object: its columns and its mask's area and bbox; 0 if anything is unusual. */
static int annotation_one(PyObject *ann, double *id, double *area, double *bbox, int64_t *size,
                          int64_t *mask_area, double *mask_bbox)
{
    double ignored[4];
    if (!PyDict_CheckExact(ann))
        return 0;
    PyObject *segmentation = PyDict_GetItem(ann, key_segmentation);
    if (!segmentation || !PyDict_CheckExact(segmentation))
        return 0;
    PyObject *counts = PyDict_GetItem(segmentation, key_counts);
    if (!counts || !PyUnicode_CheckExact(counts) || !size_of(PyDict_GetItem(segmentation, key_size), size)
        || !integer_of(PyDict_GetItem(ann, key_id), id) || !number_of(PyDict_GetItem(ann, key_area), area)
        || !number_of(PyDict_GetItem(ann, key_predicted_iou), &ignored[0])
        || !number_of(PyDict_GetItem(ann, key_stability_score), &ignored[1])
        || !numbers_of(PyDict_GetItem(ann, key_bbox), 4, bbox)
        || !numbers_of(PyDict_GetItem(ann, key_crop_box), 4, ignored))
        return 0;
    PyObject *points = PyDict_GetItem(ann, key_point_coords);
    if (!points || !PyList_CheckExact(points))
        return 0;
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(counts, &len);
    if (!text) {
        PyErr_Clear();
        return 0;
    }
    return mask_stats_one((const unsigned char *)text, len, size[0], size[1], mask_area, mask_bbox);
}

PyDoc_STRVAR(annotation_stats_doc,
"annotation_stats(files, ids, area, bbox, size, mask_area, mask_bbox) -> bool\n\n"
"The columns of every annotation of every file (files: a list of the 'annotations' lists\n"
"of SA-1B documents) and the area and bbox of every mask, in one pass: ids and area\n"
"(float64, one per annotation), bbox (float64, four), size (int64, [height, width]),\n"
"mask_area (int64, one) and mask_bbox (float64, four) are written. False as soon as an\n"
"annotation is not exactly as SA-1B writes it (an object with segmentation {size: two\n"
"ints, counts: a string}, an int id, numbers for area, predicted_iou and stability_score, lists\n"
"of four numbers for bbox and crop_box, a list for point_coords) or a mask is not well\n"
"formed (see mask_stats): the general, slower path must then take the batch.");

static PyObject *annotation_stats(PyObject *self, PyObject *args)
{
    PyObject *files;
    Py_buffer ids, area, bbox, size, mask_area, mask_bbox;
    if (!PyArg_ParseTuple(args, "O!w*w*w*w*w*w*", &PyList_Type, &files, &ids, &area, &bbox, &size, &mask_area,
                          &mask_bbox))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = 0;
    for (Py_ssize_t f = 0; f < PyList_GET_SIZE(files); f++) {
        PyObject *annotations = PyList_GET_ITEM(files, f);
        if (!PyList_CheckExact(annotations)) {
            result = Py_NewRef(Py_False);
            goto done;
        }
        n += PyList_GET_SIZE(annotations);
    }
    if (!buffer_holds(&ids, n, 8, "ids") || !buffer_holds(&area, n, 8, "area") || !buffer_holds(&bbox, n, 32, "bbox")
        || !buffer_holds(&size, n, 16, "size") || !buffer_holds(&mask_area, n, 8, "mask_area")
        || !buffer_holds(&mask_bbox, n, 32, "mask_bbox"))
        goto done;
    int usual = 1;
    Py_ssize_t i = 0;
    for (Py_ssize_t f = 0; f < PyList_GET_SIZE(files) && usual; f++) {
        PyObject *annotations = PyList_GET_ITEM(files, f);
        for (Py_ssize_t a = 0; a < PyList_GET_SIZE(annotations) && usual; a++, i++)
            usual = annotation_one(PyList_GET_ITEM(annotations, a), &((double *)ids.buf)[i],
                                   &((double *)area.buf)[i], &((double *)bbox.buf)[4 * i],
                                   &((int64_t *)size.buf)[2 * i], &((int64_t *)mask_area.buf)[i],
                                   &((double *)mask_bbox.buf)[4 * i]);
    }
    result = PyBool_FromLong(usual);
done:
    PyBuffer_Release(&ids);
    PyBuffer_Release(&area);
    PyBuffer_Release(&bbox);
    PyBuffer_Release(&size);
    PyBuffer_Release(&mask_area);
    PyBuffer_Release(&mask_bbox);
    return result;
}

static PyMethodDef methods[] = {
    {"mask_stats", mask_stats, METH_VARARGS, mask_stats_doc},
    {"annotation_stats", annotation_stats, METH_VARARGS, annotation_stats_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rlestats",
    "Area and bbox of COCO compressed RLE masks in one pass over their strings (see rle.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__rlestats(void)
{
    struct { PyObject **key; const char *name; } keys[] = {
        {&key_segmentation, "segmentation"}, {&key_counts, "counts"}, {&key_size, "size"}, {&key_id, "id"},
        {&key_area, "area"}, {&key_bbox, "bbox"}, {&key_predicted_iou, "predicted_iou"},
        {&key_stability_score, "stability_score"}, {&key_point_coords, "point_coords"}, {&key_crop_box, "crop_box"},
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (!(*keys[k].key = PyUnicode_InternFromString(keys[k].name)))
            return NULL;
    return PyModule_Create(&module);
}
