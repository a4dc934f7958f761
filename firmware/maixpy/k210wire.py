# k210wire: the k210-deploy wire protocol (firmware/PROTOCOL.md), version 1.
#
# One implementation for both ends so they cannot drift: the host imports it as
# `k210.firmware.k210wire` (CPython), the board as `import k210wire` (MicroPython on
# MaixPy-v1 / CanMV). Hence only what MicroPython 1.11 has: struct, bytearray, memoryview,
# %-formatting (no f-strings), no annotations, no dataclasses. The frame decoder and writer
# keep their buffers for life, so the board does not allocate a frame-sized buffer per frame.
#
# Frame on the wire:  COBS( header | payload | CRC-32 ) 0x00
#   header  = u8 version, u8 type, u8 flags, u8 reserved, u16 seq   (little-endian)
#   CRC-32  = zlib/ISO-HDLC CRC of header+payload, u32 little-endian
# ruff: noqa: UP031

try:
    import ustruct as struct
except ImportError:
    import struct

try:
    import ubinascii as binascii
except ImportError:
    import binascii

PROTOCOL_VERSION = 1
HEADER_LEN = 6
CRC_LEN = 4
OVERHEAD = HEADER_LEN + CRC_LEN
MIN_MAX_FRAME = 128  # smaller frames could not carry a HELLO or an ERROR with its text
MAX_NDIM = 8
MAX_TENSORS = 8  # inputs, and outputs, per model
MAX_STR = 255

# Message types: requests from the host are < 0x80, messages from the board are >= 0x80.
HELLO_REQ = 0x01
MODEL_INFO_REQ = 0x02
LOAD_BEGIN = 0x03
LOAD_CHUNK = 0x04
LOAD_COMMIT = 0x05
INFER_CHUNK = 0x06
REBOOT = 0x07
ACK = 0x80
HELLO = 0x81
MODEL_INFO = 0x82
RESULT = 0x83
ERROR = 0x84
LOG = 0x85

TYPE_NAMES = {
    HELLO_REQ: "HELLO_REQ",
    MODEL_INFO_REQ: "MODEL_INFO_REQ",
    LOAD_BEGIN: "LOAD_BEGIN",
    LOAD_CHUNK: "LOAD_CHUNK",
    LOAD_COMMIT: "LOAD_COMMIT",
    INFER_CHUNK: "INFER_CHUNK",
    REBOOT: "REBOOT",
    ACK: "ACK",
    HELLO: "HELLO",
    MODEL_INFO: "MODEL_INFO",
    RESULT: "RESULT",
    ERROR: "ERROR",
    LOG: "LOG",
}

FLAG_REPLY = 0x01  # board frame answering the host frame with the same seq
FLAG_EVENT = 0x02  # board frame nobody asked for (boot HELLO, LOG); seq is the board's own counter

# ERROR codes (u16).
E_BAD_VERSION = 1
E_UNKNOWN_TYPE = 2
E_BAD_PAYLOAD = 3
E_NO_MODEL = 4
E_GAP = 5
E_STALE = 6
E_TOO_BIG = 7
E_BAD_SIZE = 8
E_NOT_LOADING = 9
E_HASH_MISMATCH = 10
E_UNSUPPORTED_KMODEL = 11
E_LOAD_FAILED = 12
E_INFER_FAILED = 13
E_STORAGE = 14
E_UNSUPPORTED = 15
E_INTERNAL = 16
E_NOT_CACHED = 17  # detail 0: no such sample on the board, 1: its cache entry was damaged and is dropped

ERROR_NAMES = {
    E_BAD_VERSION: "BAD_VERSION",
    E_UNKNOWN_TYPE: "UNKNOWN_TYPE",
    E_BAD_PAYLOAD: "BAD_PAYLOAD",
    E_NO_MODEL: "NO_MODEL",
    E_GAP: "GAP",
    E_STALE: "STALE",
    E_TOO_BIG: "TOO_BIG",
    E_BAD_SIZE: "BAD_SIZE",
    E_NOT_LOADING: "NOT_LOADING",
    E_HASH_MISMATCH: "HASH_MISMATCH",
    E_UNSUPPORTED_KMODEL: "UNSUPPORTED_KMODEL",
    E_LOAD_FAILED: "LOAD_FAILED",
    E_INFER_FAILED: "INFER_FAILED",
    E_STORAGE: "STORAGE",
    E_UNSUPPORTED: "UNSUPPORTED",
    E_INTERNAL: "INTERNAL",
    E_NOT_CACHED: "NOT_CACHED",
}

# HELLO caps (the u16 at payload offset 2, 0 on boards that predate them): what else a board takes.
CAP_INFLATE = 0x01  # INFER_CHUNK mode ZLIB: the board inflates zlib streams
CAP_CACHE = 0x02  # modes KEEP and CACHED: the board keeps samples by SHA-256
CAP_CACHE_LOG2_SHIFT = 8  # caps bits 8..15: floor(log2(sample cache bytes)), 0 without a cache

# INFER_CHUNK mode (the u16 at payload offset 2, 0 = the tensor itself): what the chunk stream holds.
MODE_ZLIB = 0x01  # the tensor as a zlib (RFC 1950) stream
MODE_KEEP = 0x02  # the stream starts with the tensor's SHA-256; the board checks it and keeps the tensor
MODE_CACHED = 0x04  # the stream is only the SHA-256 of a tensor the board keeps
SHA_LEN = 32

LOG_DEBUG = 0
LOG_INFO = 1
LOG_WARN = 2
LOG_ERROR = 3

# Tensor element types: nncase's datatype codes (runtime/datatypes.def), so kmodel v5 maps 1:1.
DT_INT8 = 0
DT_INT16 = 1
DT_INT32 = 2
DT_INT64 = 3
DT_UINT8 = 4
DT_UINT16 = 5
DT_UINT32 = 6
DT_UINT64 = 7
DT_FLOAT16 = 8
DT_FLOAT32 = 9
DT_FLOAT64 = 10
DT_BFLOAT16 = 11
DTYPE_SIZES = {0: 1, 1: 2, 2: 4, 3: 8, 4: 1, 5: 2, 6: 4, 7: 8, 8: 2, 9: 4, 10: 8, 11: 2}
DTYPE_NAMES = {
    0: "int8", 1: "int16", 2: "int32", 3: "int64", 4: "uint8", 5: "uint16", 6: "uint32",
    7: "uint64", 8: "float16", 9: "float32", 10: "float64", 11: "bfloat16",
}

# Fixed parts of the payloads (struct formats; all little-endian).
# HELLO: proto, n_versions, 0, max_frame, rx_window, nonce, max_model, max_input, rx_frames, rx_dropped
HELLO_FMT = "<BBHIIIIIII"
HELLO_LEN = 32
MODEL_INFO_FMT = "<BBBBI32s"  # loaded, kmodel_version, n_inputs, n_outputs, size, sha256
MODEL_INFO_LEN = 40
LOAD_BEGIN_FMT = "<I32sBB"  # size, sha256, n_inputs, n_outputs
LOAD_BEGIN_LEN = 38
LOAD_CHUNK_FMT = "<I"  # offset
LOAD_CHUNK_LEN = 4
INFER_CHUNK_FMT = "<HHII"  # req, 0, total, offset
INFER_CHUNK_LEN = 12
ACK_FMT = "<HHI"  # req, 0, next
ACK_LEN = 8
RESULT_FMT = "<HBBIII"  # req, n_outputs, 0, micros, total, offset
RESULT_LEN = 16
ERROR_FMT = "<HHI"  # code, req, detail
ERROR_LEN = 8
RECORD_FMT = "<BBHI"  # one output record in a RESULT blob: dtype, ndim, 0, nbytes (then dims, data)
RECORD_LEN = 8

# Chunk payload room left after header, CRC and the biggest chunk header (INFER_CHUNK).
CHUNK_OVERHEAD = OVERHEAD + INFER_CHUNK_LEN


class ProtocolError(ValueError):
    """A frame or payload that does not follow PROTOCOL.md (the only error parsers raise)."""


# --- CRC-32 (ISO-HDLC / zlib: poly 0x04C11DB7 reflected, init and xorout 0xFFFFFFFF) -------------

_crc_table = None


def _crc32_soft(data, crc=0):
    # Only for MicroPython builds without ubinascii.crc32; slow but exact.
    global _crc_table
    if _crc_table is None:
        _crc_table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            _crc_table.append(c)
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _crc_table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


_HAS_CRC32 = hasattr(binascii, "crc32")  # MaixPy and CanMV build ubinascii with crc32


def crc32(data, crc=0):
    """CRC-32 of `data` (any buffer); `crc` continues a previous value."""
    if _HAS_CRC32:
        return binascii.crc32(data, crc) & 0xFFFFFFFF
    return _crc32_soft(data, crc)


# --- COBS (Cheshire & Baker 1999; the encoder matches the examples on Wikipedia) -----------------


def cobs_max_encoded(n):
    """Largest COBS encoding of n bytes, without the 0x00 delimiter."""
    return n + n // 254 + 1


def cobs_encode(src, n, dst):
    """Encode src[:n] into dst; return the encoded length (no delimiter written)."""
    code_at = 0
    out = 1
    code = 1
    for i in range(n):
        b = src[i]
        if b == 0:
            dst[code_at] = code
            code_at = out
            out += 1
            code = 1
        else:
            dst[out] = b
            out += 1
            code += 1
            if code == 0xFF:
                dst[code_at] = code
                if i + 1 == n:
                    return out  # data ended on a full block: no trailing code byte
                code_at = out
                out += 1
                code = 1
    dst[code_at] = code
    return out


def cobs_decode(src, n, dst):
    """Decode src[:n] (no delimiter) into dst. Return the length, -1 if malformed, -2 if too long."""
    src_mv = memoryview(src)
    dst_mv = memoryview(dst)
    cap = len(dst)
    i = 0
    out = 0
    while i < n:
        code = src[i]
        if code == 0:
            return -1
        i += 1
        run = code - 1
        if i + run > n:
            return -1
        if out + run > cap:
            return -2
        if run:
            dst_mv[out:out + run] = src_mv[i:i + run]
        out += run
        i += run
        if code != 0xFF and i < n:
            if out >= cap:
                return -2
            dst[out] = 0
            out += 1
    return out


# --- frames --------------------------------------------------------------------------------------


class FrameDecoder:
    """Streaming receiver: feed it bytes as they come; it calls handler(frame) for every good frame.

    `frame` is a memoryview of header+payload (CRC checked and stripped), valid only during the
    call. Garbage, bad-CRC, malformed and over-long frames are dropped and counted, never raised:
    the next 0x00 delimiter resynchronises the stream.
    """

    def __init__(self, max_frame):
        self.max_frame = max_frame
        self._enc = bytearray(cobs_max_encoded(max_frame))
        self._dec = bytearray(max_frame)
        self._dec_mv = memoryview(self._dec)
        self._n = 0
        self._skipping = False  # inside an over-long frame: drop bytes up to the next delimiter
        self.frames = 0
        self.bad_crc = 0
        self.bad_cobs = 0
        self.overruns = 0
        self.runts = 0

    def dropped(self):
        return self.bad_crc + self.bad_cobs + self.overruns + self.runts

    def reset(self):
        self._n = 0
        self._skipping = False

    def feed(self, data, handler, n=-1):
        if n < 0:
            n = len(data)
        enc = self._enc
        cap = len(enc)
        k = self._n
        for i in range(n):
            b = data[i]
            if b == 0:
                if self._skipping:
                    self._skipping = False
                elif k:
                    self._n = 0
                    self._finish(k, handler)
                k = 0
            elif self._skipping:
                pass
            elif k < cap:
                enc[k] = b
                k += 1
            else:
                self._skipping = True
                self.overruns += 1
                k = 0
        self._n = k

    def _finish(self, k, handler):
        n = cobs_decode(self._enc, k, self._dec)
        if n == -2:
            self.overruns += 1
            return
        if n < 0:
            self.bad_cobs += 1
            return
        if n < OVERHEAD:
            self.runts += 1
            return
        body = n - CRC_LEN
        want = struct.unpack_from("<I", self._dec, body)[0]
        if crc32(self._dec_mv[:body]) != want:
            self.bad_crc += 1
            return
        self.frames += 1
        handler(self._dec_mv[:body])


class FrameWriter:
    """Builds frames in two buffers kept for life: `raw` (header+payload+CRC) and `enc` (COBS + 0x00).

    Write the payload into raw[HEADER_LEN:], then seal() returns the bytes to send.
    """

    def __init__(self, max_frame):
        self.max_frame = max_frame
        self.raw = bytearray(max_frame)
        self.enc = bytearray(cobs_max_encoded(max_frame) + 1)
        self._raw_mv = memoryview(self.raw)
        self._enc_mv = memoryview(self.enc)

    def room(self):
        """Largest payload that fits one frame."""
        return self.max_frame - OVERHEAD

    def seal(self, mtype, flags, seq, payload_len):
        if payload_len < 0 or payload_len > self.max_frame - OVERHEAD:
            raise ProtocolError("payload of %d bytes does not fit a %d-byte frame" % (payload_len, self.max_frame))
        struct.pack_into("<BBBBH", self.raw, 0, PROTOCOL_VERSION, mtype, flags, 0, seq & 0xFFFF)
        body = HEADER_LEN + payload_len
        struct.pack_into("<I", self.raw, body, crc32(self._raw_mv[:body]))
        m = cobs_encode(self.raw, body + CRC_LEN, self.enc)
        self.enc[m] = 0
        return self._enc_mv[:m + 1]


def parse_header(frame):
    """(version, type, flags, seq) of a decoded frame."""
    if len(frame) < HEADER_LEN:
        raise ProtocolError("frame shorter than its header")
    version, mtype, flags, _, seq = struct.unpack_from("<BBBBH", frame, 0)
    return version, mtype, flags, seq


def encode_frame(mtype, flags, seq, payload):
    """One complete frame (COBS-encoded, with delimiter) as bytes. Allocates: for hosts and tests."""
    writer = FrameWriter(OVERHEAD + len(payload))
    writer.raw[HEADER_LEN:HEADER_LEN + len(payload)] = payload
    return bytes(writer.seal(mtype, flags, seq, len(payload)))


def decode_frames(data, max_frame=1 << 20):
    """All good frames in `data` as (version, type, flags, seq, payload bytes) (for hosts and tests)."""
    out = []

    def keep(frame):
        version, mtype, flags, seq = parse_header(frame)
        out.append((version, mtype, flags, seq, bytes(frame[HEADER_LEN:])))

    FrameDecoder(max_frame).feed(data, keep)
    return out


# --- payload pieces ------------------------------------------------------------------------------


def _need(buf, off, n):
    if off < 0 or off + n > len(buf):
        raise ProtocolError("payload truncated (need %d bytes at offset %d, have %d)" % (n, off, len(buf)))


def put_str(buf, off, text, limit=MAX_STR):
    """u8 length + UTF-8 bytes, cut at `limit` bytes (a cut may split a character: readers replace it)."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(data) > limit:
        data = data[:limit]
    if off + 1 + len(data) > len(buf):
        raise ProtocolError("string does not fit the frame")
    buf[off] = len(data)
    buf[off + 1:off + 1 + len(data)] = data
    return off + 1 + len(data)


def get_str(buf, off):
    _need(buf, off, 1)
    n = buf[off]
    _need(buf, off + 1, n)
    raw = bytes(buf[off + 1:off + 1 + n])
    try:
        text = raw.decode("utf-8")
    except (UnicodeError, ValueError):
        raise ProtocolError("string is not UTF-8") from None
    return text, off + 1 + n


def desc_len(shape):
    return 2 + 4 * len(shape)


def put_desc(buf, off, dtype, shape):
    if len(shape) > MAX_NDIM:
        raise ProtocolError("tensor has %d dimensions, at most %d allowed" % (len(shape), MAX_NDIM))
    if off + desc_len(shape) > len(buf):
        raise ProtocolError("tensor descriptor does not fit the frame")
    buf[off] = dtype
    buf[off + 1] = len(shape)
    off += 2
    for d in shape:
        struct.pack_into("<I", buf, off, d)
        off += 4
    return off


def get_desc(buf, off):
    """((dtype, shape tuple), next offset) of one tensor descriptor."""
    _need(buf, off, 2)
    dtype = buf[off]
    ndim = buf[off + 1]
    if ndim > MAX_NDIM:
        raise ProtocolError("tensor descriptor with %d dimensions" % ndim)
    off += 2
    _need(buf, off, 4 * ndim)
    dims = []
    for _ in range(ndim):
        dims.append(struct.unpack_from("<I", buf, off)[0])
        off += 4
    return (dtype, tuple(dims)), off


def tensor_nbytes(dtype, shape):
    """Bytes of a dense tensor; -1 for an unknown dtype."""
    size = DTYPE_SIZES.get(dtype, -1)
    if size < 0:
        return -1
    for d in shape:
        size *= d
    return size


def kmodel_version(head):
    """kmodel format version from its first 8 bytes: 5/4 ('LDMK' + u32), 3 (u32 3 first), 0 unknown."""
    if len(head) >= 8 and bytes(head[0:4]) == b"LDMK":
        return struct.unpack_from("<I", head, 4)[0]
    if len(head) >= 4 and struct.unpack_from("<I", head, 0)[0] == 3:
        return 3
    return 0


# --- message payloads: put_* write at `off` in `buf` and return the end offset --------------------


def put_hello(buf, off, max_frame, rx_window, nonce, max_model, max_input, rx_frames, rx_dropped,
              versions, firmware, fw_version, backend, caps=0):
    struct.pack_into(HELLO_FMT, buf, off, PROTOCOL_VERSION, len(versions), caps, max_frame, rx_window,
                     nonce & 0xFFFFFFFF, max_model, max_input, rx_frames & 0xFFFFFFFF, rx_dropped & 0xFFFFFFFF)
    off += HELLO_LEN
    for v in versions:
        buf[off] = v
        off += 1
    off = put_str(buf, off, firmware)
    off = put_str(buf, off, fw_version)
    return put_str(buf, off, backend)


def parse_hello(p):
    _need(p, 0, HELLO_LEN)
    proto, nver, caps, max_frame, rx_window, nonce, max_model, max_input, rx_frames, rx_dropped = struct.unpack_from(
        HELLO_FMT, p, 0)
    off = HELLO_LEN
    _need(p, off, nver)
    versions = tuple(p[off + i] for i in range(nver))
    off += nver
    firmware, off = get_str(p, off)
    fw_version, off = get_str(p, off)
    backend, off = get_str(p, off)
    fields = {
        "proto": proto, "max_frame": max_frame, "rx_window": rx_window, "nonce": nonce,
        "max_model": max_model, "max_input": max_input, "rx_frames": rx_frames, "rx_dropped": rx_dropped,
        "kmodel_versions": list(versions), "firmware": firmware, "fw_version": fw_version, "backend": backend,
    }
    if caps:  # absent = 0: a board without caps (and the vectors) reads as before
        fields["caps"] = caps
    return fields


def _check_tensor_count(inputs, outputs):
    if len(inputs) > MAX_TENSORS or len(outputs) > MAX_TENSORS:
        raise ProtocolError("at most %d inputs and %d outputs" % (MAX_TENSORS, MAX_TENSORS))


def put_model_info(buf, off, loaded, version, size, sha256, source, inputs, outputs):
    _check_tensor_count(inputs, outputs)
    struct.pack_into(MODEL_INFO_FMT, buf, off, 1 if loaded else 0, version, len(inputs), len(outputs), size,
                     bytes(sha256))
    off = put_str(buf, off + MODEL_INFO_LEN, source)
    for dtype, shape in inputs:
        off = put_desc(buf, off, dtype, shape)
    for dtype, shape in outputs:
        off = put_desc(buf, off, dtype, shape)
    return off


def parse_model_info(p):
    _need(p, 0, MODEL_INFO_LEN)
    loaded, version, n_in, n_out, size, sha = struct.unpack_from(MODEL_INFO_FMT, p, 0)
    source, off = get_str(p, MODEL_INFO_LEN)
    inputs, off = _get_descs(p, off, n_in)
    outputs, off = _get_descs(p, off, n_out)
    return {
        "loaded": loaded, "kmodel_version": version, "size": size, "sha256": binascii.hexlify(sha).decode(),
        "source": source, "inputs": inputs, "outputs": outputs,
    }


def _get_descs(p, off, count):
    if count > MAX_TENSORS:
        raise ProtocolError("%d tensors, at most %d allowed" % (count, MAX_TENSORS))
    descs = []
    for _ in range(count):
        desc, off = get_desc(p, off)
        descs.append(desc)
    return descs, off


def put_load_begin(buf, off, size, sha256, inputs, outputs):
    _check_tensor_count(inputs, outputs)
    struct.pack_into(LOAD_BEGIN_FMT, buf, off, size, bytes(sha256), len(inputs), len(outputs))
    off += LOAD_BEGIN_LEN
    for dtype, shape in inputs:
        off = put_desc(buf, off, dtype, shape)
    for dtype, shape in outputs:
        off = put_desc(buf, off, dtype, shape)
    return off


def parse_load_begin(p):
    """(size, sha256 bytes, inputs, outputs)."""
    _need(p, 0, LOAD_BEGIN_LEN)
    size, sha, n_in, n_out = struct.unpack_from(LOAD_BEGIN_FMT, p, 0)
    inputs, off = _get_descs(p, LOAD_BEGIN_LEN, n_in)
    outputs, off = _get_descs(p, off, n_out)
    return size, sha, inputs, outputs


def put_chunk_header(buf, off, offset):
    struct.pack_into(LOAD_CHUNK_FMT, buf, off, offset)
    return off + LOAD_CHUNK_LEN


def parse_load_chunk(p):
    """(offset, data start within p)."""
    _need(p, 0, LOAD_CHUNK_LEN)
    return struct.unpack_from(LOAD_CHUNK_FMT, p, 0)[0], LOAD_CHUNK_LEN


def put_infer_header(buf, off, req, total, offset, mode=0):
    struct.pack_into(INFER_CHUNK_FMT, buf, off, req, mode, total, offset)
    return off + INFER_CHUNK_LEN


def parse_infer_chunk(p):
    """(req, total, offset, data start within p)."""
    _need(p, 0, INFER_CHUNK_LEN)
    req, _, total, offset = struct.unpack_from(INFER_CHUNK_FMT, p, 0)
    return req, total, offset, INFER_CHUNK_LEN


def infer_mode(p):
    """The mode of an INFER_CHUNK payload (MODE_* bits; 0: the chunks carry the tensor itself)."""
    _need(p, 0, INFER_CHUNK_LEN)
    return struct.unpack_from("<H", p, 2)[0]


def put_ack(buf, off, req, next_offset):
    struct.pack_into(ACK_FMT, buf, off, req, 0, next_offset)
    return off + ACK_LEN


def parse_ack(p):
    """(req, next offset)."""
    _need(p, 0, ACK_LEN)
    req, _, nxt = struct.unpack_from(ACK_FMT, p, 0)
    return req, nxt


def put_result_header(buf, off, req, n_outputs, micros, total, offset):
    struct.pack_into(RESULT_FMT, buf, off, req, n_outputs, 0, micros & 0xFFFFFFFF, total, offset)
    return off + RESULT_LEN


def parse_result(p):
    """(req, n_outputs, micros, total, offset, data start within p)."""
    _need(p, 0, RESULT_LEN)
    req, n_out, _, micros, total, offset = struct.unpack_from(RESULT_FMT, p, 0)
    return req, n_out, micros, total, offset, RESULT_LEN


def put_error(buf, off, code, req, detail, text, limit=MAX_STR):
    struct.pack_into(ERROR_FMT, buf, off, code, req, detail & 0xFFFFFFFF)
    return put_str(buf, off + ERROR_LEN, text, limit)


def parse_error(p):
    """(code, req, detail, text)."""
    _need(p, 0, ERROR_LEN)
    code, req, detail = struct.unpack_from(ERROR_FMT, p, 0)
    text, _ = get_str(p, ERROR_LEN)
    return code, req, detail, text


def put_log(buf, off, level, text, limit=MAX_STR):
    buf[off] = level
    return put_str(buf, off + 1, text, limit)


def parse_log(p):
    """(level, text)."""
    _need(p, 0, 1)
    text, _ = get_str(p, 1)
    return p[0], text


def record_header_len(shape):
    return RECORD_LEN + 4 * len(shape)


def put_record_header(buf, off, dtype, shape, nbytes):
    struct.pack_into(RECORD_FMT, buf, off, dtype, len(shape), 0, nbytes)
    off += RECORD_LEN
    for d in shape:
        struct.pack_into("<I", buf, off, d)
        off += 4
    return off


def parse_result_blob(blob, count):
    """The output records of a reassembled RESULT blob: [(dtype, shape, data bytes)]."""
    out = []
    off = 0
    for _ in range(count):
        _need(blob, off, RECORD_LEN)
        dtype, ndim, _, nbytes = struct.unpack_from(RECORD_FMT, blob, off)
        if ndim > MAX_NDIM:
            raise ProtocolError("output record with %d dimensions" % ndim)
        off += RECORD_LEN
        _need(blob, off, 4 * ndim + nbytes)
        dims = []
        for _ in range(ndim):
            dims.append(struct.unpack_from("<I", blob, off)[0])
            off += 4
        out.append((dtype, tuple(dims), bytes(blob[off:off + nbytes])))
        off += nbytes
    if off != len(blob):
        raise ProtocolError("RESULT blob has %d bytes after its last record" % (len(blob) - off))
    return out


# --- whole messages as dicts (hosts, tests, vectors; the board uses the put_/parse_ functions) ------


def decode_message(mtype, payload):
    """Fields of one message as a dict (see PROTOCOL.md). Raises ProtocolError only."""
    p = memoryview(payload)
    if mtype in (HELLO_REQ, MODEL_INFO_REQ, LOAD_COMMIT, REBOOT):
        return {}
    if mtype == HELLO:
        return parse_hello(p)
    if mtype == MODEL_INFO:
        return parse_model_info(p)
    if mtype == LOAD_BEGIN:
        size, sha, inputs, outputs = parse_load_begin(p)
        return {"size": size, "sha256": binascii.hexlify(sha).decode(), "inputs": inputs, "outputs": outputs}
    if mtype == LOAD_CHUNK:
        offset, start = parse_load_chunk(p)
        return {"offset": offset, "data": bytes(p[start:])}
    if mtype == INFER_CHUNK:
        req, total, offset, start = parse_infer_chunk(p)
        fields = {"req": req, "total": total, "offset": offset, "data": bytes(p[start:])}
        mode = infer_mode(p)
        if mode:  # absent = 0, as in HELLO's caps
            fields["mode"] = mode
        return fields
    if mtype == ACK:
        req, nxt = parse_ack(p)
        return {"req": req, "next": nxt}
    if mtype == RESULT:
        req, n_out, micros, total, offset, start = parse_result(p)
        return {"req": req, "n_outputs": n_out, "micros": micros, "total": total, "offset": offset,
                "data": bytes(p[start:])}
    if mtype == ERROR:
        code, req, detail, text = parse_error(p)
        return {"code": code, "req": req, "detail": detail, "text": text}
    if mtype == LOG:
        level, text = parse_log(p)
        return {"level": level, "text": text}
    raise ProtocolError("unknown message type 0x%02x" % mtype)


def encode_payload(mtype, fields):
    """Payload bytes of one message from its fields (the inverse of decode_message)."""
    f = fields
    size = 64 + 2 * len(f.get("data", b""))
    for key in ("inputs", "outputs"):
        for _, shape in f.get(key, ()):
            size += desc_len(shape)
    buf = bytearray(size + 3 * 256)
    if mtype in (HELLO_REQ, MODEL_INFO_REQ, LOAD_COMMIT, REBOOT):
        end = 0
    elif mtype == HELLO:
        end = put_hello(buf, 0, f["max_frame"], f["rx_window"], f["nonce"], f["max_model"], f["max_input"],
                        f["rx_frames"], f["rx_dropped"], f["kmodel_versions"], f["firmware"], f["fw_version"],
                        f["backend"], f.get("caps", 0))
    elif mtype == MODEL_INFO:
        end = put_model_info(buf, 0, f["loaded"], f["kmodel_version"], f["size"], binascii.unhexlify(f["sha256"]),
                             f["source"], f["inputs"], f["outputs"])
    elif mtype == LOAD_BEGIN:
        end = put_load_begin(buf, 0, f["size"], binascii.unhexlify(f["sha256"]), f["inputs"], f["outputs"])
    elif mtype == LOAD_CHUNK:
        end = put_chunk_header(buf, 0, f["offset"])
        buf[end:end + len(f["data"])] = f["data"]
        end += len(f["data"])
    elif mtype == INFER_CHUNK:
        end = put_infer_header(buf, 0, f["req"], f["total"], f["offset"], f.get("mode", 0))
        buf[end:end + len(f["data"])] = f["data"]
        end += len(f["data"])
    elif mtype == ACK:
        end = put_ack(buf, 0, f["req"], f["next"])
    elif mtype == RESULT:
        end = put_result_header(buf, 0, f["req"], f["n_outputs"], f["micros"], f["total"], f["offset"])
        buf[end:end + len(f["data"])] = f["data"]
        end += len(f["data"])
    elif mtype == ERROR:
        end = put_error(buf, 0, f["code"], f["req"], f["detail"], f["text"])
    elif mtype == LOG:
        end = put_log(buf, 0, f["level"], f["text"])
    else:
        raise ProtocolError("unknown message type 0x%02x" % mtype)
    return bytes(buf[:end])
