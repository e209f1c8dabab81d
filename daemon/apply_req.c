/*
 * apply_req.c - the decoder of apply request bodies (apply_req.h).
 *
 * Order of checks: empty body, nesting depth (before jansson builds
 * anything), JSON syntax, unknown fields, layer, input tensor (dtype,
 * shape, element limit, finite values), input shape against the layer,
 * rows limit, conv parameters and output size, adapter set.  Every size
 * computed from the request is overflow-checked.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply_req.h"
#include "limits.h"

static int fail(lokrd_perr *e, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(lokrd_perr *e, unsigned status, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	e->status = status;
	snprintf(e->code, sizeof e->code, "%s", code);
	return -1;
}

/* stride/padding/dilation: an int or [h, w]. */
static int conv_param(lokrd_perr *e, const json_t *o, const char *name, int64_t def, int64_t min,
                      int64_t out[2])
{
	const json_t *v = json_object_get(o, name);
	out[0] = out[1] = def;
	if (!v)
		return 0;
	if (json_is_integer(v)) {
		out[0] = out[1] = json_integer_value(v);
	} else if (json_is_array(v) && json_array_size(v) == 2 &&
	           json_is_integer(json_array_get(v, 0)) && json_is_integer(json_array_get(v, 1))) {
		out[0] = json_integer_value(json_array_get(v, 0));
		out[1] = json_integer_value(json_array_get(v, 1));
	} else {
		return fail(e, 400, "bad_request", "\"%s\" must be an integer or [h, w]", name);
	}
	if (out[0] < min || out[1] < min || out[0] > 65536 || out[1] > 65536)
		return fail(e, 400, "bad_request", "\"%s\" must be between %lld and 65536", name,
		            (long long)min);
	return 0;
}

/* jansson lexes a string byte by byte (about 10 ns a byte): for a 1 x 320
 * b64 request that was a fifth of lokrd's CPU time (perf, wrk -c1).  When the
 * body has exactly one "b64" key whose value is plain base64 (and no
 * backslash anywhere, so every string is what it looks like), the value is
 * cut out of a copy of the body and put back into the parsed tree as is.
 * Returns the copy (with *lo, *n the value's offset and length in `body`),
 * or NULL when the body does not qualify. */
#define B64_LIFT_MIN 64

static int b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/' || c == '=';
}

static char *b64_lift(const char *body, size_t len, size_t *lo, size_t *n, size_t *copy_len)
{
	if (len < B64_LIFT_MIN || memchr(body, '\\', len))
		return NULL;
	size_t val = 0, vlen = 0;
	int found = 0;
	for (size_t i = 0; i < len; i++) {
		if (body[i] != '"')
			continue;
		const char *q = memchr(body + i + 1, '"', len - i - 1);
		if (!q)
			return NULL;
		size_t end = (size_t)(q - body); /* closing quote */
		size_t k = end + 1;
		while (k < len &&
		       (body[k] == ' ' || body[k] == '\t' || body[k] == '\n' || body[k] == '\r'))
			k++;
		if (end - i - 1 == 3 && !memcmp(body + i + 1, "b64", 3) && k < len &&
		    body[k] == ':') {
			if (found++)
				return NULL; /* two "b64" keys: leave it all to jansson */
			k++;
			while (k < len && (body[k] == ' ' || body[k] == '\t' || body[k] == '\n' ||
			                   body[k] == '\r'))
				k++;
			if (k >= len || body[k] != '"')
				return NULL;
			size_t v = k + 1, w = v;
			while (w < len && b64_char((unsigned char)body[w]))
				w++;
			if (w >= len || body[w] != '"' || w - v < B64_LIFT_MIN)
				return NULL;
			val = v;
			vlen = w - v;
			end = w;
		}
		i = end;
	}
	if (!found)
		return NULL;
	char *c = malloc(len - vlen);
	if (!c)
		return NULL;
	memcpy(c, body, val);
	memcpy(c + val, body + val + vlen, len - val - vlen);
	*lo = val;
	*n = vlen;
	*copy_len = len - vlen;
	return c;
}

/* jansson's tree of the body, as json_loadb(body, len, JSON_REJECT_DUPLICATES)
 * gives it (same tree, same errors), taking the b64 shortcut when it can. */
static json_t *load_body(const char *body, size_t len, json_error_t *je)
{
	size_t lo, n, clen;
	char *c = b64_lift(body, len, &lo, &n, &clen);
	if (c) {
		json_t *o = json_loadb(c, clen, JSON_REJECT_DUPLICATES, je);
		free(c);
		/* The only "b64" key: it is input's when input.b64 is "" here. */
		json_t *s = o ? json_object_get(json_object_get(o, "input"), "b64") : NULL;
		if (s && json_is_string(s) && json_string_length(s) == 0 &&
		    !json_string_setn_nocheck(s, body + lo, n))
			return o;
		json_decref(o); /* elsewhere, an error, or out of memory: the plain way */
	}
	return json_loadb(body, len, JSON_REJECT_DUPLICATES, je);
}

/* Parse and validate the body into `j` (any thread: reads only the
 * immutable base and options).  0, or -1 with the answer in *e. */
int lokrd_apply_decode(const lokr_base *base, const lokrd_apply_limits *lim, const char *body,
                       size_t len, lokrd_apply_job *j, lokrd_perr *e)
{
	static const char *const fields[] = {"layer",   "adapters", "input", "stride",
	                                     "padding", "dilation", NULL};
	if (len == 0)
		return fail(e, 400, "bad_json",
		            "the request body is empty; a JSON object is expected");
	if (lokrd_json_depth(body, len, lim->max_depth + 1) > lim->max_depth)
		return fail(e, 400, "too_deep", "the JSON body nests deeper than %d levels",
		            lim->max_depth);
	json_error_t je;
	json_t *o = load_body(body, len, &je);
	if (!o)
		return fail(e, 400, "bad_json", "invalid JSON at line %d column %d: %s", je.line,
		            je.column, je.text);
	int rc = -1;
	char err[600];
	if (!json_is_object(o)) {
		fail(e, 400, "bad_json", "the request body must be a JSON object");
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		int ok = 0;
		for (const char *const *f = fields; *f; f++)
			ok |= !strcmp(*f, key);
		if (!ok) {
			fail(e, 400, "bad_request", "unknown field \"%.64s\"", key);
			goto out;
		}
	}
	const char *layer = json_string_value(json_object_get(o, "layer"));
	if (!layer) {
		fail(e, 400, "bad_request", "\"layer\" (a string) is required");
		goto out;
	}
	int64_t li = lokr_base_layer_find(base, layer);
	if (li < 0) {
		fail(e, 404, "layer_not_found", "no layer '%.200s' in the base model", layer);
		goto out;
	}
	const lokr_layer *L = lokr_base_layer_at(base, (size_t)li);
	j->layer = (size_t)li;
	j->conv = L->kind != LOKR_LAYER_LINEAR;
	if (j->conv && L->ndim != 4) {
		fail(e, 400, "unsupported_layer",
		     "layer '%.200s' is a %dD convolution; /v1/apply serves linear and conv2d",
		     layer, L->ndim - 2);
		goto out;
	}
	const json_t *input = json_object_get(o, "input");
	if (!input) {
		fail(e, 400, "bad_request", "\"input\" (a tensor) is required");
		goto out;
	}
	if (lokrd_tensor_decode(input, lim->max_elements, &j->in, err, sizeof err)) {
		fail(e, 400, "bad_input", "\"input\": %s", err);
		goto out;
	}
	if (!j->conv) {
		if (json_object_get(o, "stride") || json_object_get(o, "padding") ||
		    json_object_get(o, "dilation")) {
			fail(
			    e, 400, "bad_request",
			    "stride, padding and dilation apply to conv2d layers only; '%.200s' is "
			    "linear",
			    layer);
			goto out;
		}
		/* (in) is accepted as one row, answered as (out), like F.linear. */
		if (j->in.ndim == 1 && j->in.shape[0] == L->in) {
			j->unbatched = 1;
			j->in.ndim = 2;
			j->in.shape[1] = L->in;
			j->in.shape[0] = 1;
		}
		if (j->in.ndim != 2 || j->in.shape[1] != L->in) {
			fail(e, 400, "bad_input_shape",
			     "input of linear layer '%.200s' must have shape (batch, %lld)", layer,
			     (long long)L->in);
			goto out;
		}
		j->rows = j->in.shape[0];
		uint64_t nout;
		if (__builtin_mul_overflow((uint64_t)j->rows, (uint64_t)L->out, &nout) ||
		    nout > lim->max_elements) {
			fail(e, 400, "too_large",
			     "the output of %lld rows x %lld would exceed the limit of %llu "
			     "elements",
			     (long long)j->rows, (long long)L->out,
			     (unsigned long long)lim->max_elements);
			goto out;
		}
	} else {
		/* (in, H, W) is one image, answered as (out, Ho, Wo), like conv2d. */
		if (j->in.ndim == 3 && j->in.shape[0] == L->in) {
			j->unbatched = 1;
			j->in.ndim = 4;
			j->in.shape[3] = j->in.shape[2];
			j->in.shape[2] = j->in.shape[1];
			j->in.shape[1] = j->in.shape[0];
			j->in.shape[0] = 1;
		}
		if (j->in.ndim != 4 || j->in.shape[1] != L->in) {
			fail(e, 400, "bad_input_shape",
			     "input of conv2d layer '%.200s' must have shape (batch, %lld, H, W)",
			     layer, (long long)L->in);
			goto out;
		}
		if (conv_param(e, o, "stride", 1, 1, j->cp.stride) ||
		    conv_param(e, o, "padding", 0, 0, j->cp.padding) ||
		    conv_param(e, o, "dilation", 1, 1, j->cp.dilation))
			goto out;
		j->rows = j->in.shape[0];
		j->h = j->in.shape[2];
		j->w = j->in.shape[3];
		if (lokr_conv2d_out_size(L, &j->cp, j->h, j->w, &j->ho, &j->wo) || j->ho < 1 ||
		    j->wo < 1) {
			fail(e, 400, "bad_input_shape",
			     "input %lldx%lld is too small for the %lldx%lld kernel with this "
			     "padding "
			     "and dilation",
			     (long long)j->h, (long long)j->w, (long long)L->shape[2],
			     (long long)L->shape[3]);
			goto out;
		}
		uint64_t nout;
		if (__builtin_mul_overflow((uint64_t)j->rows, (uint64_t)L->out, &nout) ||
		    __builtin_mul_overflow(nout, (uint64_t)j->ho, &nout) ||
		    __builtin_mul_overflow(nout, (uint64_t)j->wo, &nout) ||
		    nout > lim->max_elements) {
			fail(e, 400, "too_large",
			     "the output (%lld, %lld, %lld, %lld) would exceed the limit of %llu "
			     "elements",
			     (long long)j->rows, (long long)L->out, (long long)j->ho,
			     (long long)j->wo, (unsigned long long)lim->max_elements);
			goto out;
		}
	}
	if ((uint64_t)j->rows > lim->max_rows) {
		fail(e, 400, "too_many_rows", "%lld input rows exceed the limit of %llu",
		     (long long)j->rows, (unsigned long long)lim->max_rows);
		goto out;
	}
	if (lokrd_set_parse(json_object_get(o, "adapters"), lim->max_set, &j->set, err,
	                    sizeof err)) {
		fail(e, 400, "bad_request", "%s", err);
		goto out;
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}
