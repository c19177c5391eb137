/* rtproxy.io._audiofast: the audio packing of rtproxy.io.audiocodec, compiled.
 *
 * One pass per chunk instead of NumPy's several: the two byte planes are read
 * side by side, the zigzag is undone and the running sums of the predictor are
 * taken as each sample goes by. The output is byte for byte that of
 * audiocodec.unpack (docs/FORMAT.md, "Audio packing"); the NumPy code stays the
 * reference and the fallback when this module is not built.
 *
 * Input is untrusted (a recording may be crafted): every length is checked
 * before a byte is read, and the output size is the input size minus the tag.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define TAG_RAW 0
#define TAG_ORDER2 3
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

static PyMethodDef methods[] = {
    {"unpack", unpack, METH_O, "unpack(packed) -> bytes: audiocodec.unpack, compiled."},
    {"unpack_each", unpack_each, METH_O, "unpack_each(chunks) -> list[bytes]: unpack() of each."},
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
