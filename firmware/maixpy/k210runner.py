# k210runner: the board side of the k210-deploy protocol (firmware/PROTOCOL.md, "Board behaviour").
#
# Platform-free: main.py gives it a model backend, a function that sends bytes, a clock and an
# upload store, then feeds it the bytes the UART delivers. The C runner (firmware/c/core/runner.c)
# implements the same rules; tests hold both to the same sessions. MicroPython-compatible like
# k210wire: no f-strings, no annotations, buffers allocated once in __init__.
# ruff: noqa: UP031

try:
    import k210wire as w
except ImportError:
    from k210.firmware import k210wire as w

try:
    import uhashlib as hashlib
except ImportError:
    import hashlib

IDLE = 0
RECEIVING = 1
DONE = 2  # LOAD: committed; INFER: ran, result kept for a retried final chunk


class RunnerError(Exception):
    """A request the board refuses: becomes an ERROR frame with this code, detail and text."""

    def __init__(self, code, text, detail=0):
        super().__init__(text)  # MicroPython's Exception has no __init__ attribute to call
        self.code = code
        self.text = text
        self.detail = detail


class FileStore:
    """Upload storage: LOAD_MODEL bytes go to a file the KPU API can load by path."""

    def __init__(self, path):
        self.path = path
        self._f = None

    def begin(self, size):
        self.abort()
        self._f = open(self.path, "wb")  # noqa: SIM115 - stays open across LOAD_CHUNKs

    def write(self, data):
        self._f.write(data)

    def finish(self):
        self._f.close()
        self._f = None
        return self.path

    def abort(self):
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None


class Runner:
    """Serves requests for one model backend.

    backend: name, kmodel_versions, why_not(version) -> str, load(source, size, version, inputs,
             outputs) -> (inputs, outputs), unload(), infer(input_mv, n) -> (micros, records)
             where records are (dtype, shape, buffer) the backend keeps until its next infer.
    send(buf): writes a complete encoded frame.
    store: begin(size), write(mv), finish() -> source, abort()   (None: LOAD_MODEL unsupported)
    cache: a k210cache.SampleCache (None: no sample cache; modes KEEP and CACHED unsupported)
    inflate(buf) -> bytes: zlib decompression (None: mode ZLIB unsupported)
    buffers: [input, zlib] bytearrays of max_input bytes or more, taken by the caller (None: allocated here)
    stream_input: plain inputs go chunk by chunk into backend.open_input(n) (a file the firmware's KPU
             reads) and backend.infer gets None for the input: no RAM copy; no cache and no inflate.
    """

    def __init__(self, backend, send, store, nonce, max_frame=1024, rx_window=4096, max_model=0,
                 max_input=65536, firmware="k210-runner", fw_version="0", reboot=None, cache=None, inflate=None,
                 stream_input=False, buffers=None):
        if max_frame < w.MIN_MAX_FRAME:
            raise ValueError("max_frame below %d" % w.MIN_MAX_FRAME)
        if stream_input and (cache is not None or inflate is not None):
            raise ValueError("a streamed input has no RAM copy for the sample cache or zlib")
        self.stream_input = stream_input
        self._in_file = None
        self.backend = backend
        self.send = send
        self.store = store
        self.nonce = nonce & 0xFFFFFFFF
        self.max_frame = max_frame
        self.rx_window = rx_window
        self.max_model = max_model if store is not None else 0
        self.max_input = max_input
        self.firmware = firmware
        self.fw_version = fw_version
        self.reboot = reboot
        self.decoder = w.FrameDecoder(max_frame)
        self.tx = w.FrameWriter(max_frame)
        buffers = list(buffers or ())
        self.input = buffers.pop(0) if buffers else bytearray(0 if stream_input else max_input)
        self._input_mv = memoryview(self.input)
        self._scratch = bytearray(w.RECORD_LEN + 4 * w.MAX_NDIM)
        self.cache = cache
        self.inflate = inflate
        self.caps = 0
        self.modes = 0
        if inflate is not None:
            self.caps |= w.CAP_INFLATE
            self.modes |= w.MODE_ZLIB
            # a zlib stream lands here, the tensor in self.input
            self._packed = buffers.pop(0) if buffers else bytearray(max_input)
        if cache is not None and cache.caps_log2():
            self.caps |= w.CAP_CACHE | (cache.caps_log2() << w.CAP_CACHE_LOG2_SHIFT)
            self.modes |= w.MODE_KEEP | w.MODE_CACHED
        self._sha = bytearray(w.SHA_LEN)
        self.event_seq = 0
        self.ignored = 0
        self.abandoned = 0
        self._error_req = 0
        self.boot_notes = []  # (level, text) repeated after every HELLO reply: a host may miss them at boot
        self._reset_model()
        self._reset_load()
        self._reset_infer()

    # -- state ------------------------------------------------------------------------------------

    def _reset_model(self):
        self.model_loaded = False
        self.model_version = 0
        self.model_size = 0
        self.model_sha = bytes(32)
        self.model_source = ""
        self.model_inputs = []
        self.model_outputs = []
        self.model_input_bytes = -1  # -1: unknown, any size up to max_input accepted

    def _reset_load(self):
        if self.store is not None and getattr(self, "load_state", IDLE) == RECEIVING:
            self.store.abort()
        self.load_state = IDLE
        self.load_size = 0
        self.load_sha = bytes(32)
        self.load_expected = 0
        self.load_hash = None
        self.load_inputs = []
        self.load_outputs = []
        self.load_head = bytearray(8)
        self.load_version = 0

    def _reset_infer(self):
        self._close_input()
        self.infer_state = IDLE
        self.infer_req = 0
        self.infer_total = 0
        self.infer_expected = 0
        self.infer_micros = 0
        self.infer_records = []
        self.infer_mode = 0

    # -- entry points for the board glue -----------------------------------------------------------

    def feed(self, data, n=-1):
        self.decoder.feed(data, self._on_frame, n)

    def announce(self):
        """The unsolicited HELLO a board sends when it boots."""
        end = self._put_hello()
        self._send(w.HELLO, w.FLAG_EVENT, self._next_event_seq(), end)

    def log(self, level, text, keep=False):
        """Send a LOG event; keep=True also repeats it after every HELLO reply (boot problems)."""
        if keep:
            self.boot_notes.append((level, text))
        end = w.put_log(self.tx.raw, w.HEADER_LEN, level, text, min(w.MAX_STR, self.tx.room() - 2))
        self._send(w.LOG, w.FLAG_EVENT, self._next_event_seq(), end)

    def load_boot_model(self, source, size, inputs=(), outputs=(), sha256=None, version=0):
        """Load the model named by the board's config (a path or a flash offset)."""
        ins, outs = self.backend.load(source, size, version, list(inputs), list(outputs))
        self._set_model(version, size, sha256 or bytes(32), source, ins, outs)

    # -- dispatch ---------------------------------------------------------------------------------

    def _on_frame(self, frame):
        version, mtype, flags, seq = w.parse_header(frame)
        if flags & (w.FLAG_REPLY | w.FLAG_EVENT):
            self.ignored += 1  # a board frame echoed back to us: never answer it
            return
        self._error_req = 0  # the INFER request an ERROR refers to, once its chunk parsed
        try:
            if version != w.PROTOCOL_VERSION:
                raise RunnerError(w.E_BAD_VERSION, "protocol version %d, this board speaks %d"
                                  % (version, w.PROTOCOL_VERSION), w.PROTOCOL_VERSION)
            p = frame[w.HEADER_LEN:]
            if mtype == w.INFER_CHUNK:
                self._on_infer_chunk(seq, p)
            elif mtype == w.LOAD_CHUNK:
                self._on_load_chunk(seq, p)
            elif mtype == w.HELLO_REQ:
                self._reset_load()
                self._reset_infer()
                self._send(w.HELLO, w.FLAG_REPLY, seq, self._put_hello())
                for level, text in self.boot_notes:
                    self.log(level, text)
            elif mtype == w.MODEL_INFO_REQ:
                self._send(w.MODEL_INFO, w.FLAG_REPLY, seq, self._put_model_info())
            elif mtype == w.LOAD_BEGIN:
                self._on_load_begin(seq, p)
            elif mtype == w.LOAD_COMMIT:
                self._on_load_commit(seq)
            elif mtype == w.REBOOT:
                self._ack(seq, 0, 0)
                if self.reboot is not None:
                    self.reboot()
            else:
                raise RunnerError(w.E_UNKNOWN_TYPE, "unknown message type 0x%02x" % mtype, mtype)
        except RunnerError as e:
            self._error(seq, e.code, self._error_req, e.detail, e.text)
        except w.ProtocolError as e:
            self._error(seq, w.E_BAD_PAYLOAD, self._error_req, 0, str(e))
        except Exception as e:  # a runner must keep serving whatever a backend raises
            self._error(seq, w.E_INTERNAL, self._error_req, 0, "%s: %s" % (type(e).__name__, e))

    # -- LOAD_MODEL -------------------------------------------------------------------------------

    def _on_load_begin(self, seq, p):
        size, sha, inputs, outputs = w.parse_load_begin(p)
        if self.store is None:
            raise RunnerError(w.E_UNSUPPORTED, "this board has no upload storage; flash the model instead")
        if size == 0:
            raise RunnerError(w.E_BAD_PAYLOAD, "empty model")
        if size > self.max_model:
            raise RunnerError(w.E_TOO_BIG, "model of %d bytes, this board takes at most %d"
                              % (size, self.max_model), self.max_model)
        # The upload replaces the model: the board has no room for two.
        self._reset_load()
        self._reset_infer()
        if self.model_loaded:
            self.backend.unload()
            self._reset_model()
        try:
            self.store.begin(size)
        except OSError as e:
            raise RunnerError(w.E_STORAGE, "cannot open upload storage: %s" % e) from None
        self.load_state = RECEIVING
        self.load_size = size
        self.load_sha = bytes(sha)
        self.load_hash = hashlib.sha256()
        self.load_inputs = inputs
        self.load_outputs = outputs
        self._ack(seq, 0, 0)

    def _on_load_chunk(self, seq, p):
        offset, start = w.parse_load_chunk(p)
        n = len(p) - start
        if self.load_state == DONE and offset + n <= self.load_size:
            self._ack(seq, 0, self.load_size)  # late duplicate after COMMIT
            return
        if self.load_state != RECEIVING:
            raise RunnerError(w.E_NOT_LOADING, "LOAD_CHUNK without LOAD_BEGIN")
        if offset > self.load_expected:
            raise RunnerError(w.E_GAP, "chunk at %d, expected %d" % (offset, self.load_expected), self.load_expected)
        end = offset + n
        if end > self.load_size:
            raise RunnerError(w.E_BAD_PAYLOAD, "chunk ends at %d, past the model size %d" % (end, self.load_size))
        if end > self.load_expected:
            fresh = p[start + self.load_expected - offset:]
            head_was = self.load_expected
            try:
                self.store.write(fresh)
            except OSError as e:
                self._reset_load()
                raise RunnerError(w.E_STORAGE, "upload write failed: %s" % e) from None
            self.load_hash.update(fresh)
            self.load_expected = end
            if head_was < 8:
                self._check_kmodel_head(fresh, head_was)
        self._ack(seq, 0, self.load_expected)

    def _check_kmodel_head(self, fresh, at):
        for i in range(min(8 - at, len(fresh))):
            self.load_head[at + i] = fresh[i]
        if self.load_expected < min(8, self.load_size):
            return
        version = w.kmodel_version(self.load_head)
        if version not in self.backend.kmodel_versions:
            self._reset_load()
            raise RunnerError(w.E_UNSUPPORTED_KMODEL, self.backend.why_not(version), version)
        self.load_version = version

    def _on_load_commit(self, seq):
        if self.load_state == DONE and self.model_loaded:
            self._send(w.MODEL_INFO, w.FLAG_REPLY, seq, self._put_model_info())  # duplicate COMMIT
            return
        if self.load_state != RECEIVING:
            raise RunnerError(w.E_NOT_LOADING, "LOAD_COMMIT without LOAD_BEGIN")
        if self.load_expected != self.load_size:
            raise RunnerError(w.E_GAP, "have %d of %d bytes" % (self.load_expected, self.load_size),
                              self.load_expected)
        self._ack(seq, 0, self.load_size)  # "got it, working": the host now waits its long timeout
        digest = self.load_hash.digest()
        try:
            source = self.store.finish()
        except OSError as e:
            self._reset_load()
            raise RunnerError(w.E_STORAGE, "upload close failed: %s" % e) from None
        self.load_state = IDLE
        if digest != self.load_sha:
            raise RunnerError(w.E_HASH_MISMATCH, "sha256 of the received model differs from LOAD_BEGIN's")
        try:
            ins, outs = self.backend.load(source, self.load_size, self.load_version, self.load_inputs,
                                          self.load_outputs)
        except RunnerError:
            raise
        except Exception as e:
            raise RunnerError(w.E_LOAD_FAILED, "%s: %s" % (type(e).__name__, e)) from None
        self._set_model(self.load_version, self.load_size, digest, "upload", ins, outs)
        self.load_state = DONE
        self._send(w.MODEL_INFO, w.FLAG_REPLY, seq, self._put_model_info())

    def _set_model(self, version, size, sha, source, inputs, outputs):
        self.model_loaded = True
        self.model_version = version
        self.model_size = size
        self.model_sha = bytes(sha)
        self.model_source = source if isinstance(source, str) else "flash:0x%x" % source
        self.model_inputs = inputs
        self.model_outputs = outputs
        total = 0
        for dtype, shape in inputs:
            nbytes = w.tensor_nbytes(dtype, shape)
            if nbytes < 0:
                total = -1
                break
            total += nbytes
        self.model_input_bytes = total if inputs else -1

    # -- INFER ------------------------------------------------------------------------------------

    def _on_infer_chunk(self, seq, p):
        req, total, offset, start = w.parse_infer_chunk(p)
        mode = w.infer_mode(p)
        self._error_req = req
        n = len(p) - start
        if not self.model_loaded:
            raise RunnerError(w.E_NO_MODEL, "no model loaded")
        if mode & ~self.modes:
            raise RunnerError(w.E_UNSUPPORTED, "INFER mode 0x%x, this board takes 0x%x" % (mode, self.modes),
                              self.modes)
        if req != self.infer_req or self.infer_state == IDLE:
            if offset != 0:
                raise RunnerError(w.E_STALE, "request %d is not the current one; restart it at offset 0" % req, 0)
            self._begin_request(req, total, mode)
        elif mode != self.infer_mode:
            raise RunnerError(w.E_BAD_PAYLOAD, "request %d changed its mode" % req)
        elif total != self.infer_total:
            raise RunnerError(w.E_BAD_SIZE, "request %d has total %d, its first chunk said %d"
                              % (req, total, self.infer_total), self.infer_total)
        end = offset + n
        if end > total:
            raise RunnerError(w.E_BAD_PAYLOAD, "chunk ends at %d, past the tensor size %d" % (end, total))
        if self.infer_state == DONE:
            if end == total:
                self._send_result(seq)  # retried final chunk: same result, no second run
            else:
                self._ack(seq, req, total)
            return
        if offset > self.infer_expected:
            raise RunnerError(w.E_GAP, "chunk at %d, expected %d" % (offset, self.infer_expected), self.infer_expected)
        if end > self.infer_expected:
            skip = self.infer_expected - offset
            if mode:
                self._place(self.infer_expected, p[start + skip:])
            elif self.stream_input:
                self._stream(p[start + skip:])
            else:
                self._input_mv[self.infer_expected:end] = p[start + skip:]
            self.infer_expected = end
        self._ack(seq, req, self.infer_expected)  # next == total means "got it all, running"
        if self.infer_expected < total:
            return
        nbytes = total
        if mode:
            self.infer_state = IDLE  # a request whose tensor cannot be had is over: the host resends it
            nbytes = self._tensor_of(mode, total)
        data = self._input_mv
        if self.stream_input:
            self._close_input()
            data = None
        try:
            micros, records = self.backend.infer(data, nbytes)
        except RunnerError:
            self.infer_state = IDLE
            raise
        except Exception as e:
            self.infer_state = IDLE
            raise RunnerError(w.E_INFER_FAILED, "%s: %s" % (type(e).__name__, e)) from None
        self.infer_micros = micros
        self.infer_records = records
        if mode & w.MODE_KEEP:  # before the RESULT: the host counts the card's write as the request's work
            self.cache.store(self._sha, self._input_mv[:nbytes])
        self.infer_state = DONE
        self._send_result(seq)

    # -- INFER modes: compressed and cached samples (PROTOCOL.md 3.5) ---------------------------------

    def _place(self, at, data):
        """Stream bytes from offset `at`: the SHA-256 first (KEEP, CACHED), then the tensor or zlib stream."""
        mode = self.infer_mode
        head = w.SHA_LEN if mode & (w.MODE_KEEP | w.MODE_CACHED) else 0
        if at < head:
            k = min(head - at, len(data))
            self._sha[at:at + k] = data[:k]
            at += k
            data = data[k:]
        if len(data):
            body = self._packed if mode & w.MODE_ZLIB else self.input
            body[at - head:at - head + len(data)] = data

    def _stream(self, data):
        try:
            self._in_file.write(data)
        except OSError as e:
            self._close_input()
            self.infer_state = IDLE
            raise RunnerError(w.E_STORAGE, "input file write failed: %s" % e) from None

    def _close_input(self):
        f = getattr(self, "_in_file", None)
        self._in_file = None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def _tensor_of(self, mode, total):
        """Put the request's tensor into self.input; its size. Nothing runs on bytes that fail a check."""
        if mode & w.MODE_CACHED:
            n = self.cache.load(self._sha, self.input)
            if n < 0:
                damaged = 1 if n == -2 else 0
                raise RunnerError(w.E_NOT_CACHED, "sample %s %s" % (
                    w.binascii.hexlify(self._sha[:8]).decode(), "was damaged, dropped" if damaged else "not kept"),
                    damaged)
        elif mode & w.MODE_ZLIB:
            head = w.SHA_LEN if mode & w.MODE_KEEP else 0
            try:
                raw = self.inflate(memoryview(self._packed)[:total - head])
            except MemoryError:
                raise RunnerError(w.E_BAD_PAYLOAD, "inflate failed: the GC heap cannot hold the inflated input") \
                    from None
            except Exception:  # zlib's own checks (header, Adler-32, truncation)
                # Not the exception's text: uzlib says "-3", 1.2x's zlib "[Errno 22] EINVAL" or nothing (a
                # truncated stream is an EOFError), CPython "Error -3 while decompressing data: ...".
                raise RunnerError(w.E_BAD_PAYLOAD, "inflate failed: not a valid zlib stream") from None
            n = len(raw)
            if n > self.max_input:
                raise RunnerError(w.E_TOO_BIG, "inflated input of %d bytes" % n, self.max_input)
            self.input[:n] = raw
            raw = None
        else:
            n = total - w.SHA_LEN
        if self.model_input_bytes >= 0 and n != self.model_input_bytes:
            raise RunnerError(w.E_BAD_SIZE, "input of %d bytes, the model takes %d" % (n, self.model_input_bytes),
                              self.model_input_bytes)
        # Checked on write: only the bytes the host hashed are run and kept.
        if mode & w.MODE_KEEP and hashlib.sha256(self._input_mv[:n]).digest() != bytes(self._sha):
            raise RunnerError(w.E_HASH_MISMATCH, "sha256 of the input differs from the request's")
        return n

    def _begin_request(self, req, total, mode=0):
        if total == 0:
            raise RunnerError(w.E_BAD_SIZE, "empty input tensor", max(0, self.model_input_bytes))
        head = w.SHA_LEN if mode & (w.MODE_KEEP | w.MODE_CACHED) else 0
        if mode & w.MODE_CACHED and (total != w.SHA_LEN or mode != w.MODE_CACHED):
            raise RunnerError(w.E_BAD_SIZE, "a CACHED request is the 32-byte SHA-256 alone", w.SHA_LEN)
        if total - head > self.max_input or total < head:
            raise RunnerError(w.E_TOO_BIG, "input of %d bytes, this board takes at most %d"
                              % (total, self.max_input), self.max_input)
        if mode == 0 and self.model_input_bytes >= 0 and total != self.model_input_bytes:
            raise RunnerError(w.E_BAD_SIZE, "input of %d bytes, the model takes %d" % (total, self.model_input_bytes),
                              self.model_input_bytes)
        if self.infer_state == RECEIVING:
            self.abandoned += 1
        if self.stream_input:
            self._close_input()
            try:
                self._in_file = self.backend.open_input(total)
            except OSError as e:
                self.infer_state = IDLE
                raise RunnerError(w.E_STORAGE, "cannot open the input file: %s" % e) from None
        self.infer_state = RECEIVING
        self.infer_req = req
        self.infer_total = total
        self.infer_expected = 0
        self.infer_records = []
        self.infer_mode = mode

    def _send_result(self, seq):
        # The RESULT blob (records: header + data, PROTOCOL.md) is never built whole: each part is
        # copied straight from the backend's output buffers into the frame buffer.
        records = self.infer_records
        total = 0
        for _, shape, data in records:
            total += w.record_header_len(shape) + len(data)
        room = self.tx.room() - w.RESULT_LEN
        offset = 0
        while True:
            n = min(room, total - offset)
            at = w.put_result_header(self.tx.raw, w.HEADER_LEN, self.infer_req, len(records), self.infer_micros,
                                     total, offset)
            self._copy_blob(offset, n, at)
            self._send(w.RESULT, w.FLAG_REPLY, seq, at + n)
            offset += n
            if offset >= total:
                return

    def _copy_blob(self, offset, n, at):
        dst = self.tx.raw
        pos = 0  # blob offset of the current piece
        for dtype, shape, data in self.infer_records:
            hlen = w.put_record_header(self._scratch, 0, dtype, shape, len(data))
            for piece, plen in ((self._scratch, hlen), (data, len(data))):
                lo = max(offset, pos)
                hi = min(offset + n, pos + plen)
                if lo < hi:
                    dst[at + lo - offset:at + hi - offset] = memoryview(piece)[lo - pos:hi - pos]
                pos += plen

    # -- replies ----------------------------------------------------------------------------------

    def _put_hello(self):
        return w.put_hello(self.tx.raw, w.HEADER_LEN, self.max_frame, self.rx_window, self.nonce, self.max_model,
                           self.max_input, self.decoder.frames, self.decoder.dropped(), self.backend.kmodel_versions,
                           self.firmware, self.fw_version, self.backend.name, self.caps)

    def _put_model_info(self):
        # A MODEL_INFO bigger than max_frame raises ProtocolError: the caller answers ERROR instead.
        return w.put_model_info(self.tx.raw, w.HEADER_LEN, self.model_loaded, self.model_version, self.model_size,
                                self.model_sha, self.model_source, self.model_inputs, self.model_outputs)

    def _ack(self, seq, req, next_offset):
        self._send(w.ACK, w.FLAG_REPLY, seq, w.put_ack(self.tx.raw, w.HEADER_LEN, req, next_offset))

    def _error(self, seq, code, req, detail, text):
        # Cut the text to what the frame holds: an ERROR must always go out.
        room = min(w.MAX_STR, self.tx.room() - w.ERROR_LEN - 1)
        self._send(w.ERROR, w.FLAG_REPLY, seq, w.put_error(self.tx.raw, w.HEADER_LEN, code, req, detail, text, room))

    def _send(self, mtype, flags, seq, end):
        self.send(self.tx.seal(mtype, flags, seq, end - w.HEADER_LEN))

    def _next_event_seq(self):
        seq = self.event_seq
        self.event_seq = (seq + 1) & 0xFFFF
        return seq
