# k210cache: the board's sample cache (firmware/PROTOCOL.md, "Sample cache"): test tensors kept on the
# SD card or flash filesystem under their SHA-256, so that a host re-running a test set sends each
# image once and afterwards names its hash only.
#
# One file per sample, named after the first 16 hex digits of its SHA-256 (SPIFFS on /flash takes
# names of at most 31 characters): "K2C1" | u32 size | SHA-256 (32) | the tensor. Files are written
# under a .tmp name and renamed when complete, so a power cut leaves a .tmp file (deleted at the next
# boot), never a short entry under a real name; every read hashes the tensor again and drops an entry
# that does not match, so a damaged card never feeds the model wrong bytes. Space: at most
# `capacity` bytes of entries; the oldest are removed first (boot order: as the directory lists them).
# MicroPython 1.11-compatible like k210wire: no f-strings, no annotations.
# ruff: noqa: UP031

try:
    import ustruct as struct
except ImportError:
    import struct

try:
    import ubinascii as binascii
except ImportError:
    import binascii

try:
    import uhashlib as hashlib
except ImportError:
    import hashlib

try:
    import uos as os
except ImportError:
    import os

MAGIC = b"K2C1"
HEAD_LEN = 40  # magic, u32 size, sha256
SUFFIX = ".smp"
TMP = ".tmp"
READ_PIECE = 4096  # bytes hashed at a time while reading back

MISSING = -1  # load(): no entry for that hash
DAMAGED = -2  # load(): an entry whose bytes no longer match its hash (now removed)


def entry_name(sha):
    return binascii.hexlify(bytes(sha[:8])).decode() + SUFFIX


class Volume:
    """A directory on the board's filesystem (/sd/k210cache or /flash/k210cache).

    MaixPy's (and CanMV's) /flash is SPIFFS, which has no directories: mkdir raises NotImplementedError,
    "/flash/k210cache/x.smp" is a file named "/k210cache/x.smp", and listing any path lists every file
    on the flash as "k210cache/x.smp", "main.py", ... (vfs_spiffs.c). names() keeps this directory's."""

    def __init__(self, root):
        self.root = root
        self._listed_as = root[root.rfind("/") + 1:] + "/"  # how SPIFFS lists a file of this "directory"
        try:
            os.mkdir(root)
        except OSError:
            pass  # already there (or a read-only card: the first write says so)
        except NotImplementedError:
            pass  # SPIFFS: no directories, the names carry the prefix

    def path(self, name):
        return self.root + "/" + name

    def names(self):
        names = []
        for name in os.listdir(self.root):
            if "/" in name:  # SPIFFS: a file of some "directory" on the flash
                if not name.startswith(self._listed_as):
                    continue
                name = name[len(self._listed_as):]
            names.append(name)
        return names

    def size(self, name):
        return os.stat(self.path(name))[6]

    def open(self, name, mode):
        return open(self.path(name), mode)

    def remove(self, name):
        os.remove(self.path(name))

    def rename(self, old, new):
        os.rename(self.path(old), self.path(new))


class SampleCache:
    """Samples by SHA-256 on a Volume (or anything with its methods), at most `capacity` bytes."""

    def __init__(self, volume, capacity):
        self.vol = volume
        self.capacity = capacity
        self.sizes = {}  # entry name -> bytes on the volume
        self.order = []  # entry names, oldest first
        self.used = 0
        self.stored = 0
        self.hits = 0
        self.misses = 0
        self.damaged = 0
        self.failed = 0  # stores that did not happen (card full, write error)
        self._head = bytearray(HEAD_LEN)
        self._scan()

    def _scan(self):
        for name in self.vol.names():
            if name.endswith(TMP):
                self._drop(name)  # a write cut short (power, reset): never became an entry
            elif name.endswith(SUFFIX):
                try:
                    size = self.vol.size(name)
                except OSError:
                    continue
                self.sizes[name] = size
                self.order.append(name)
                self.used += size
        self._make_room(0)

    def caps_log2(self):
        """floor(log2(capacity)): what HELLO's caps announce (0: no room at all)."""
        n = 0
        while (2 << n) <= self.capacity:
            n += 1
        return n if self.capacity >= 2 * HEAD_LEN else 0

    def _drop(self, name):
        try:
            self.vol.remove(name)
        except OSError:
            pass
        if name in self.sizes:
            self.used -= self.sizes.pop(name)
            self.order.remove(name)

    def _make_room(self, need):
        while self.order and self.used + need > self.capacity:
            self._drop(self.order[0])

    def load(self, sha, buf):
        """Read the sample with this SHA-256 into buf; its size, MISSING or DAMAGED (entry removed)."""
        name = entry_name(sha)
        if name not in self.sizes:
            self.misses += 1
            return MISSING
        try:
            n = self._read(name, sha, buf)
        except OSError:
            n = DAMAGED
        if n < 0:
            self.damaged += 1
            self._drop(name)
            return DAMAGED
        self.hits += 1
        return n

    def _read(self, name, sha, buf):
        f = self.vol.open(name, "rb")
        try:
            head = self._head
            if f.readinto(head) != HEAD_LEN or bytes(head[0:4]) != MAGIC:
                return DAMAGED
            size = struct.unpack_from("<I", head, 4)[0]
            if bytes(head[8:40]) != bytes(sha) or size > len(buf) or size + HEAD_LEN != self.sizes[name]:
                return DAMAGED
            mv = memoryview(buf)
            h = hashlib.sha256()
            got = 0
            while got < size:
                n = f.readinto(mv[got:min(size, got + READ_PIECE)])
                if not n:
                    return DAMAGED
                h.update(mv[got:got + n])
                got += n
        finally:
            f.close()
        return size if h.digest() == bytes(sha) else DAMAGED

    def store(self, sha, data):
        """Keep `data` (already checked against sha by the caller) under sha. False if it did not fit/fail."""
        name = entry_name(sha)
        need = HEAD_LEN + len(data)
        if name in self.sizes:
            # The host sends a kept sample's bytes only when it doubts the board's copy (after a reset, a
            # lost reply): write the checked bytes anew, so that a damaged copy does not outlive them.
            self._drop(name)
        if need > self.capacity:
            self.failed += 1
            return False
        self._make_room(need)
        tmp = name[:-len(SUFFIX)] + TMP
        try:
            self._write(tmp, sha, data)
            self.vol.rename(tmp, name)
        except OSError:
            self.failed += 1
            self._drop(tmp)
            return False
        self.sizes[name] = need
        self.order.append(name)
        self.used += need
        self.stored += 1
        return True

    def _write(self, tmp, sha, data):
        head = self._head
        head[0:4] = MAGIC
        struct.pack_into("<I", head, 4, len(data))
        head[8:40] = bytes(sha)
        f = self.vol.open(tmp, "wb")
        try:
            f.write(head)
            f.write(data)
        finally:
            f.close()


def from_config(config):
    """The cache main.py's CONFIG asks for, or None (no card, no room, switched off)."""
    capacity = config.get("sample_cache_bytes", 0)
    if not capacity:
        return None
    volume = config.get("sample_volume")  # the virtual board hands in its modelled storage
    if volume is None:
        root = config.get("sample_cache_dir")
        if not root:
            return None
        try:
            volume = Volume(root)
            volume.names()
        except OSError:
            return None  # no card in the slot
    try:
        return SampleCache(volume, capacity)
    except OSError:
        return None
