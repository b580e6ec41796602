"""safetensors read/write with numpy only: u64 header length, JSON header, raw little-endian tensors."""
import json
import struct

import numpy as np

_DTYPES = {'F32': np.float32, 'F16': np.float16, 'I8': np.int8, 'U8': np.uint8, 'I32': np.int32, 'I64': np.int64, 'F64': np.float64}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def save(path, tensors, metadata=None, bf16=()):
    """tensors: name -> numpy array (written in sorted name order, C order, little-endian). Names in bf16 hold
    uint16 arrays of raw bfloat16 bits (numpy has no bfloat16) and are written as BF16."""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if name in bf16 and a.dtype != np.uint16:
            raise ValueError(f'{name}: BF16 tensors must be given as uint16 bit patterns, got {a.dtype}')
        dt = 'BF16' if name in bf16 else _NAMES.get(a.dtype)
        if dt is None:
            raise ValueError(f'{name}: dtype {a.dtype} is not supported')
        b = a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': dt, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(',', ':')).encode('utf-8')
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    """-> (tensors name -> numpy array, metadata dict)."""
    with open(path, 'rb') as f:
        data = f.read()
    n = struct.unpack('<Q', data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop('__metadata__', {})
    base = 8 + n
    out = {}
    for name, e in header.items():
        b, end = e['data_offsets']
        dt = np.dtype(_DTYPES[e['dtype']]).newbyteorder('<')
        out[name] = np.frombuffer(data[base + b:base + end], dtype=dt).reshape(e['shape'])
    return out, meta
