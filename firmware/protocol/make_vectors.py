"""Write vectors.json: every message type with its fields and exact frame bytes, plus frames a
receiver must drop. Generated from k210wire (the Python implementation); the tests check these
against the C implementation and against values computed by hand (CRC check value, COBS examples).

    .venv/bin/python firmware/protocol/make_vectors.py      # rewrites firmware/protocol/vectors.json
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from k210.firmware import k210wire as w

OUT = Path(__file__).with_name("vectors.json")

SHA_A = hashlib.sha256(b"k210-deploy").hexdigest()
# A zlib stream of the 6-byte tensor 00 01 02 fd fe ff (zlib.compress(..., 9)), for the INFER mode vectors.
ZLIB_6 = "78da636064fafbef3f00060502fe"
SHA_6 = hashlib.sha256(bytes.fromhex("000102fdfeff")).hexdigest()
CAPS_C = w.CAP_INFLATE | w.CAP_CACHE | (20 << w.CAP_CACHE_LOG2_SHIFT)  # inflate, a 1 MiB sample cache
F32_SCORES = bytes.fromhex("0000803e" "0000403f")  # float32 0.25, 0.75

MESSAGES: list[tuple[str, int, int, int, dict[str, Any]]] = [
    # name, type, flags, seq, fields
    ("hello_req", w.HELLO_REQ, 0, 1, {}),
    ("model_info_req", w.MODEL_INFO_REQ, 0, 2, {}),
    ("load_commit", w.LOAD_COMMIT, 0, 0xFFFF, {}),
    ("reboot", w.REBOOT, 0, 0x1234, {}),
    ("hello_boot_event_maixpy", w.HELLO, w.FLAG_EVENT, 0, {
        "max_frame": 1024, "rx_window": 4096, "nonce": 0xDEADBEEF, "max_model": 3 << 20, "max_input": 32768,
        "rx_frames": 0, "rx_dropped": 0, "kmodel_versions": [3, 4], "firmware": "k210-deploy-maixpy",
        "fw_version": "1.0", "backend": "maixpy-v1"}),
    ("hello_reply_c", w.HELLO, w.FLAG_REPLY, 1, {
        "max_frame": 4096, "rx_window": 16384, "nonce": 0xFFFFFFFF, "max_model": 3 << 20, "max_input": 1 << 19,
        "rx_frames": 17, "rx_dropped": 2, "kmodel_versions": [3, 4, 5], "firmware": "k210-deploy-c",
        "fw_version": "1.0", "backend": "c-sdk-kpu"}),
    ("hello_reply_caps", w.HELLO, w.FLAG_REPLY, 8, {
        "max_frame": 4096, "rx_window": 16384, "nonce": 0x01020304, "max_model": 3 << 20, "max_input": 1 << 19,
        "rx_frames": 3, "rx_dropped": 0, "kmodel_versions": [3, 4, 5], "firmware": "k210-deploy-c",
        "fw_version": "1.0", "backend": "c-sdk-kpu", "caps": CAPS_C}),
    ("hello_inflate_only", w.HELLO, w.FLAG_EVENT, 0, {
        "max_frame": 1024, "rx_window": 4096, "nonce": 9, "max_model": 0, "max_input": 65536, "rx_frames": 0,
        "rx_dropped": 0, "kmodel_versions": [3, 4], "firmware": "k210-deploy-maixpy", "fw_version": "1.0",
        "backend": "canmv", "caps": w.CAP_INFLATE}),
    ("hello_empty_strings", w.HELLO, w.FLAG_REPLY, 7, {
        "max_frame": 64, "rx_window": 0, "nonce": 1, "max_model": 0, "max_input": 0, "rx_frames": 0,
        "rx_dropped": 0, "kmodel_versions": [], "firmware": "", "fw_version": "", "backend": ""}),
    ("model_info_none", w.MODEL_INFO, w.FLAG_REPLY, 2, {
        "loaded": 0, "kmodel_version": 0, "size": 0, "sha256": "00" * 32, "source": "", "inputs": [],
        "outputs": []}),
    ("model_info_loaded", w.MODEL_INFO, w.FLAG_REPLY, 9, {
        "loaded": 1, "kmodel_version": 5, "size": 123456, "sha256": SHA_A, "source": "flash:0x300000",
        "inputs": [[w.DT_UINT8, [1, 28, 28, 1]]], "outputs": [[w.DT_FLOAT32, [1, 10]], [w.DT_FLOAT32, []]]}),
    ("load_begin", w.LOAD_BEGIN, 0, 3, {
        "size": 123456, "sha256": SHA_A, "inputs": [[w.DT_FLOAT32, [1, 784]]], "outputs": [[w.DT_FLOAT32, [1, 2]]]}),
    ("load_begin_no_descs", w.LOAD_BEGIN, 0, 4, {"size": 1, "sha256": "ff" * 32, "inputs": [], "outputs": []}),
    ("load_chunk", w.LOAD_CHUNK, 0, 5, {"offset": 0, "data": "4c444d4b05000000"}),
    ("load_chunk_zeros", w.LOAD_CHUNK, 0, 6, {"offset": 1000, "data": "00" * 20}),
    ("load_chunk_254_run", w.LOAD_CHUNK, 0, 7, {"offset": 0x01020304, "data": bytes(range(1, 255)).hex()}),
    ("infer_chunk_first", w.INFER_CHUNK, 0, 10, {"req": 1, "total": 6, "offset": 0, "data": "000102"}),
    ("infer_chunk_final", w.INFER_CHUNK, 0, 11, {"req": 1, "total": 6, "offset": 3, "data": "fdfeff"}),
    ("infer_chunk_zlib", w.INFER_CHUNK, 0, 20, {"req": 2, "total": 14, "offset": 0, "data": ZLIB_6,
                                                 "mode": w.MODE_ZLIB}),
    ("infer_chunk_keep", w.INFER_CHUNK, 0, 21, {"req": 3, "total": 38, "offset": 0, "data": SHA_6 + "000102",
                                                 "mode": w.MODE_KEEP}),
    ("infer_chunk_keep_final", w.INFER_CHUNK, 0, 22, {"req": 3, "total": 38, "offset": 35, "data": "fdfeff",
                                                       "mode": w.MODE_KEEP}),
    ("infer_chunk_zlib_keep", w.INFER_CHUNK, 0, 23, {"req": 4, "total": 46, "offset": 0, "data": SHA_6 + ZLIB_6,
                                                      "mode": w.MODE_ZLIB | w.MODE_KEEP}),
    ("infer_chunk_cached", w.INFER_CHUNK, 0, 24, {"req": 5, "total": 32, "offset": 0, "data": SHA_6,
                                                   "mode": w.MODE_CACHED}),
    ("infer_chunk_empty", w.INFER_CHUNK, 0, 12, {"req": 65535, "total": 0, "offset": 0, "data": ""}),
    ("ack_load", w.ACK, w.FLAG_REPLY, 5, {"req": 0, "next": 8}),
    ("ack_infer", w.ACK, w.FLAG_REPLY, 10, {"req": 1, "next": 3}),
    ("result_one_part", w.RESULT, w.FLAG_REPLY, 11, {
        "req": 1, "n_outputs": 1, "micros": 1234, "total": 24, "offset": 0,
        "data": ("0902000008000000" "01000000" "02000000") + F32_SCORES.hex()}),
    ("result_second_part", w.RESULT, w.FLAG_REPLY, 11, {
        "req": 1, "n_outputs": 2, "micros": 0xFFFFFFFF, "total": 100, "offset": 90, "data": "00" * 10}),
    ("error_gap", w.ERROR, w.FLAG_REPLY, 13, {"code": w.E_GAP, "req": 4, "detail": 512,
                                             "text": "chunk at 1024, expected 512"}),
    ("error_v5_on_maixpy", w.ERROR, w.FLAG_REPLY, 14, {
        "code": w.E_UNSUPPORTED_KMODEL, "req": 0, "detail": 5,
        "text": "kmodel v5 (nncase >= 1.0) cannot run on MaixPy-v1"}),
    ("error_not_cached", w.ERROR, w.FLAG_REPLY, 24, {"code": w.E_NOT_CACHED, "req": 5, "detail": 0,
                                                     "text": "sample 3f2d1552cdc7483f not kept"}),
    ("error_not_cached_damaged", w.ERROR, w.FLAG_REPLY, 25, {"code": w.E_NOT_CACHED, "req": 5, "detail": 1,
                                                             "text": "sample 3f2d1552cdc7483f was damaged, dropped"}),
    ("error_unsupported_mode", w.ERROR, w.FLAG_REPLY, 26, {"code": w.E_UNSUPPORTED, "req": 6, "detail": w.MODE_ZLIB,
                                                           "text": "INFER mode 0x4, this board takes 0x1"}),
    ("error_utf8", w.ERROR, w.FLAG_REPLY, 15, {"code": w.E_INTERNAL, "req": 0, "detail": 0, "text": "µs ≠ ms"}),
    ("log_info", w.LOG, w.FLAG_EVENT, 3, {"level": w.LOG_INFO, "text": "boot model loaded"}),
    ("log_empty", w.LOG, w.FLAG_EVENT, 4, {"level": w.LOG_ERROR, "text": ""}),
]


def to_codec(mtype: int, fields: dict[str, Any]) -> dict[str, Any]:
    """JSON fields -> what k210wire.encode_payload takes (bytes for data, tuples for tensors)."""
    f = dict(fields)
    if "data" in f:
        f["data"] = bytes.fromhex(f["data"])
    for key in ("inputs", "outputs"):
        if key in f:
            f[key] = [(d, tuple(s)) for d, s in f[key]]
    return f


def to_json(fields: dict[str, Any]) -> dict[str, Any]:
    """decode_message output -> JSON fields (hex for bytes, lists for tensors)."""
    f = dict(fields)
    if "data" in f:
        f["data"] = f["data"].hex()
    for key in ("inputs", "outputs"):
        if key in f:
            f[key] = [[d, list(s)] for d, s in f[key]]
    f.pop("proto", None)
    return f


def message_vectors() -> list[dict[str, Any]]:
    out = []
    for name, mtype, flags, seq, fields in MESSAGES:
        payload = w.encode_payload(mtype, to_codec(mtype, fields))
        frame = w.encode_frame(mtype, flags, seq, payload)
        decoded = w.decode_frames(frame)
        assert len(decoded) == 1 and to_json(w.decode_message(mtype, decoded[0][4])) == fields, name
        out.append({"name": name, "type": w.TYPE_NAMES[mtype], "flags": flags, "seq": seq, "fields": fields,
                    "payload_hex": payload.hex(), "frame_hex": frame.hex()})
    return out


def receiver_vectors(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Byte streams with the frames a receiver must deliver (by vector name), in order."""
    ack = bytes.fromhex(next(v["frame_hex"] for v in messages if v["name"] == "ack_load"))
    hello = bytes.fromhex(next(v["frame_hex"] for v in messages if v["name"] == "hello_req"))
    bad_crc = bytearray(ack)
    bad_crc[3] ^= 0x01  # a payload byte flipped: COBS still decodes, CRC does not match
    runt = w.encode_frame(w.ACK, 0, 1, b"")[:-1]
    runt = bytes([runt[0]]) + runt[1:4] + b"\x00"  # 3 decoded bytes: shorter than header + CRC
    return [
        {"name": "garbage_then_frame", "stream_hex": (b"\x13\x37\xff\xfe\x00" + ack).hex(), "frames": ["ack_load"]},
        {"name": "garbage_without_delimiter_then_frame", "stream_hex": (b"\x42" * 40 + ack).hex(),
         "frames": []},  # the garbage has no 0x00: it glues onto the frame, which then fails its CRC
        {"name": "bad_crc_dropped", "stream_hex": (bytes(bad_crc) + hello).hex(), "frames": ["hello_req"]},
        {"name": "runt_dropped", "stream_hex": (runt + hello).hex(), "frames": ["hello_req"]},
        {"name": "empty_frames_ignored", "stream_hex": (b"\x00\x00\x00" + hello + b"\x00").hex(),
         "frames": ["hello_req"]},
        {"name": "two_frames_back_to_back", "stream_hex": (hello + ack).hex(), "frames": ["hello_req", "ack_load"]},
        {"name": "zero_code_byte", "stream_hex": (b"\x03\x11\x00" + hello).hex(), "frames": ["hello_req"]},
    ]


def main() -> None:
    messages = message_vectors()
    doc = {
        "protocol_version": w.PROTOCOL_VERSION,
        "note": "Generated by firmware/protocol/make_vectors.py from k210wire; checked against the C codec "
                "(tests/test_protocol_vectors.py). Fields: integers; bytes and sha256 as hex; strings as text; "
                "tensors as [dtype, [dims]]. frame_hex includes the trailing 0x00 delimiter.",
        "messages": messages,
        "receiver": receiver_vectors(messages),
    }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(messages)} message vectors and {len(doc['receiver'])} receiver vectors to {OUT}")


if __name__ == "__main__":
    main()
