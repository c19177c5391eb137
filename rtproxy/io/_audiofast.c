/* rtproxy.io._audiofast: the audio packing of rtproxy.io.audiocodec, compiled.
 *
 * One pass per chunk instead of NumPy's several. unpack: the two byte planes
 * are read side by side, the zigzag is undone and the running sums of the
 * predictor are taken as each sample goes by. pack: the predictor is chosen on
 * the same probe as audiocodec's, then residual, zigzag and planes in one
 * pass. The output is byte for byte that of the NumPy code
 * (rtproxy/io/_audio_numpy.py, docs/FORMAT.md "Audio packing"), which stays the
 * reference and the fallback when this module is not built.
 *
 * Input is untrusted (a recording may be crafted): every length is checked
 * before a byte is read, and the output size is the input size minus the tag.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define TAG_RAW 0
#define TAG_ORDER0 1
#define TAG_ORDER2 3
/* As audiocodec: chunks under this many bytes are stored raw; the probe. */
#define MIN_PACK_BYTES 64
#define PROBE 2048
#define WINDOW 256
/* Below this many samples the GIL is kept (releasing it costs more). */
#define NOGIL_SAMPLES 65536

static void
unpack_body(const uint8_t *lo, Py_ssize_t n, int order, uint8_t *out)
{
    const uint8_t *hi = lo + n;
    uint16_t s1 = 0, s2 = 0;
    Py_ssize_t i;
    switch (order) {
    case 0:
        for (i = 0; i < n; i++) {
            uint16_t z = (uint16_t)(lo[i] | (hi[i] << 8));
            uint16_t r = (uint16_t)((z >> 1) ^ (uint16_t)(-(z & 1)));
            out[2 * i] = (uint8_t)r;
            out[2 * i + 1] = (uint8_t)(r >> 8);
        }
        break;
    case 1:
        for (i = 0; i < n; i++) {
            uint16_t z = (uint16_t)(lo[i] | (hi[i] << 8));
            s1 = (uint16_t)(s1 + ((z >> 1) ^ (uint16_t)(-(z & 1))));
            out[2 * i] = (uint8_t)s1;
            out[2 * i + 1] = (uint8_t)(s1 >> 8);
        }
        break;
    default:
        for (i = 0; i < n; i++) {
            uint16_t z = (uint16_t)(lo[i] | (hi[i] << 8));
            s1 = (uint16_t)(s1 + ((z >> 1) ^ (uint16_t)(-(z & 1))));
            s2 = (uint16_t)(s2 + s1);
            out[2 * i] = (uint8_t)s2;
            out[2 * i + 1] = (uint8_t)(s2 >> 8);
        }
        break;
    }
}

/* unpack(packed) -> bytes; ValueError with audiocodec.unpack's messages. */
static PyObject *
unpack(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    PyObject *out = NULL;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *p = (const uint8_t *)view.buf;
    Py_ssize_t len = view.len;
    if (len == 0) {
        PyErr_SetString(PyExc_ValueError, "empty packed audio");
        goto done;
    }
    if (p[0] == TAG_RAW) {
        out = PyBytes_FromStringAndSize((const char *)p + 1, len - 1);
        goto done;
    }
    if (p[0] > TAG_ORDER2) {
        PyErr_Format(PyExc_ValueError, "unknown audio packing tag %d", (int)p[0]);
        goto done;
    }
    if ((len - 1) % 2) {
        PyErr_SetString(PyExc_ValueError, "packed PCM16 audio of odd length");
        goto done;
    }
    {
        Py_ssize_t n = (len - 1) / 2;
        int order = p[0] - 1;
        out = PyBytes_FromStringAndSize(NULL, 2 * n);
        if (out == NULL)
            goto done;
        uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
        if (n >= NOGIL_SAMPLES) {
            Py_BEGIN_ALLOW_THREADS
            unpack_body(p + 1, n, order, o);
            Py_END_ALLOW_THREADS
        } else {
            unpack_body(p + 1, n, order, o);
        }
    }
done:
    PyBuffer_Release(&view);
    return out;
}

/* The order (0, 1, 2) whose residual has the smallest sum of magnitudes on the
 * probe: audiocodec._choose_order exactly (the same windows, joined, and the
 * same ties). */
static int
choose_order(const int16_t *x, Py_ssize_t n)
{
    int64_t c0 = 0, c1 = 0, c2 = 0;
    int32_t prev = 0, prev_e1 = 0;
    Py_ssize_t k = 0; /* samples of the probe seen */
    Py_ssize_t start, stop, step, i;
    if (n > 4 * PROBE) {
        /* windows of 256 at every n // 8 from 0 while start < n - 256, joined */
        stop = n - WINDOW;
        step = n / 8;
    } else {
        stop = 1;
        step = 1;
    }
    for (start = 0; start < stop; start += step) {
        Py_ssize_t end = n > 4 * PROBE ? start + WINDOW : (n > PROBE ? PROBE : n);
        for (i = start; i < end; i++) {
            int32_t v = x[i];
            c0 += v < 0 ? -(int64_t)v : v;
            if (k >= 1) {
                int32_t e1 = v - prev;
                c1 += e1 < 0 ? -(int64_t)e1 : e1;
                if (k >= 2) {
                    int32_t e2 = e1 - prev_e1;
                    c2 += e2 < 0 ? -(int64_t)e2 : e2;
                }
                prev_e1 = e1;
            }
            prev = v;
            k++;
        }
    }
    int order = 0;
    int64_t best = c0;
    if (c1 < c0) {
        order = 1;
        best = c1;
    }
    return c2 < best ? 2 : order;
}

static void
pack_body(const int16_t *x, Py_ssize_t n, int order, uint8_t *lo)
{
    uint8_t *hi = lo + n;
    uint16_t p1 = 0, p2 = 0; /* previous sample, previous first difference */
    for (Py_ssize_t i = 0; i < n; i++) {
        uint16_t r = (uint16_t)x[i];
        if (order >= 1) {
            uint16_t d1 = (uint16_t)(r - p1);
            p1 = r;
            r = d1;
            if (order == 2) {
                uint16_t d2 = (uint16_t)(d1 - p2);
                p2 = d1;
                r = d2;
            }
        }
        uint16_t z = (uint16_t)((uint16_t)(r << 1) ^ ((r & 0x8000) ? 0xFFFF : 0));
        lo[i] = (uint8_t)z;
        hi[i] = (uint8_t)(z >> 8);
    }
}

/* pack(audio) -> bytes: audiocodec.pack. */
static PyObject *
pack(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    PyObject *out = NULL;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t len = view.len;
    if (len < MIN_PACK_BYTES || len % 2) {
        out = PyBytes_FromStringAndSize(NULL, len + 1);
        if (out != NULL) {
            char *o = PyBytes_AS_STRING(out);
            o[0] = TAG_RAW;
            memcpy(o + 1, view.buf, (size_t)len);
        }
        goto done;
    }
    {
        Py_ssize_t n = len / 2;
        /* The samples, aligned (a buffer's bytes need not be). */
        int16_t *x = PyMem_Malloc((size_t)len);
        if (x == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        memcpy(x, view.buf, (size_t)len);
#if PY_BIG_ENDIAN
        for (Py_ssize_t i = 0; i < n; i++)
            x[i] = (int16_t)(((uint16_t)x[i] >> 8) | ((uint16_t)x[i] << 8));
#endif
        out = PyBytes_FromStringAndSize(NULL, len + 1);
        if (out != NULL) {
            uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
            int order = choose_order(x, n);
            o[0] = (uint8_t)(TAG_ORDER0 + order);
            pack_body(x, n, order, o + 1);
        }
        PyMem_Free(x);
    }
done:
    PyBuffer_Release(&view);
    return out;
}

/* unpack_each(chunks) -> list[bytes]: unpack() of each, in one call. */
static PyObject *
unpack_each(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "unpack_each() takes a sequence of bytes");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = PyList_New(n);
    if (result == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *one = unpack(self, items[i]);
        if (one == NULL) {
            Py_DECREF(result);
            Py_DECREF(seq);
            return NULL;
        }
        PyList_SET_ITEM(result, i, one);
    }
    Py_DECREF(seq);
    return result;
}

/* peak(pcm) -> int: the largest magnitude of the little-endian PCM16 samples
 * (32768 for -32768; a trailing odd byte is no sample), 0 for none. */
static PyObject *
peak(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *b = (const uint8_t *)view.buf;
    Py_ssize_t n = view.len / 2;
    int top = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int v = (int16_t)(uint16_t)(b[2 * i] | (b[2 * i + 1] << 8));
        int a = v < 0 ? -v : v;
        if (a > top)
            top = a;
    }
    PyBuffer_Release(&view);
    return PyLong_FromLong(top);
}

/* interleave_into(out, left, right) -> int: the PCM16 samples of left and right,
 * as many as the shorter holds, one of each in turn (stereo) into the writable
 * buffer out, which must hold them; the number of bytes written. */
static PyObject *
interleave_into(PyObject *self, PyObject *args)
{
    Py_buffer out, left, right;
    if (!PyArg_ParseTuple(args, "w*y*y*:interleave_into", &out, &left, &right))
        return NULL;
    Py_ssize_t n = (left.len < right.len ? left.len : right.len) / 2;
    PyObject *result = NULL;
    if (out.len < 4 * n) {
        PyErr_SetString(PyExc_ValueError, "interleave_into: the output buffer is too small");
        goto done;
    }
    {
        const uint8_t *l = (const uint8_t *)left.buf, *r = (const uint8_t *)right.buf;
        uint8_t *o = (uint8_t *)out.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            o[4 * i] = l[2 * i];
            o[4 * i + 1] = l[2 * i + 1];
            o[4 * i + 2] = r[2 * i];
            o[4 * i + 3] = r[2 * i + 1];
        }
    }
    result = PyLong_FromSsize_t(4 * n);
done:
    PyBuffer_Release(&out);
    PyBuffer_Release(&left);
    PyBuffer_Release(&right);
    return result;
}

static PyMethodDef methods[] = {
    {"pack", pack, METH_O, "pack(audio) -> bytes: audiocodec.pack, compiled."},
    {"unpack", unpack, METH_O, "unpack(packed) -> bytes: audiocodec.unpack, compiled."},
    {"unpack_each", unpack_each, METH_O, "unpack_each(chunks) -> list[bytes]: unpack() of each."},
    {"peak", peak, METH_O, "peak(pcm) -> int: the largest magnitude of its PCM16 samples."},
    {"interleave_into", interleave_into, METH_VARARGS,
     "interleave_into(out, left, right) -> int: two PCM16 tracks as one stereo track, into out."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_audiofast",
    "rtproxy's audio unpacking, compiled (rtproxy.io.audiocodec is the reference).",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__audiofast(void)
{
    return PyModuleDef_Init(&module);
}
