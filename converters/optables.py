"""Which ops each nncase release imports: data only, no logic.

Sources (read at the release tags in github.com/kendryte/nncase):
- nncase 1.9: src/importer/tflite/opcode.def (78 TFLite ops, = docs/tflite_ops.md),
  src/importer/onnx/opcode.def (117 ONNX ops, = docs/onnx_ops.md), src/importer/tflite/ops/custom.cpp
  (the only CUSTOM codes it lowers), third_party/tflite/schema.fbs (the last opcode it can name).
- nncase 0.2 (v0.2.0-beta4, the `ncc` that writes kmodel v4 for MaixPy): src/importer/tflite/opcode.def
  (40 TFLite ops) and src/importer/onnx/opcode.def (37 ONNX ops).
The error strings are the ones those importers throw (checked against nncase 1.9 on this machine).
"""

from __future__ import annotations

from dataclasses import dataclass


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())

NNCASE19_TFLITE_OPS = _words(
    """
    ABS ADD ARG_MAX ARG_MIN AVERAGE_POOL_2D BATCH_MATMUL CAST CEIL CONCATENATION CONV_2D COS CUSTOM
    DEPTHWISE_CONV_2D DIV EQUAL EXP EXPAND_DIMS FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GREATER
    GREATER_EQUAL L2_NORMALIZATION LEAKY_RELU LESS LESS_EQUAL LOG LOGISTIC MAX_POOL_2D MAXIMUM MEAN
    MINIMUM MUL NEG NOT_EQUAL PAD PADV2 MIRROR_PAD PACK POW REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU
    PRELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR ROUND RSQRT SHAPE SIN SLICE SOFTMAX
    SPACE_TO_BATCH_ND SQUEEZE BATCH_TO_SPACE_ND STRIDED_SLICE SQRT SQUARE SUB SUM TANH TILE TRANSPOSE
    TRANSPOSE_CONV QUANTIZE FAKE_QUANT DEQUANTIZE GATHER GATHER_ND ONE_HOT SQUARED_DIFFERENCE
    LOG_SOFTMAX SPLIT HARD_SWISH
    """)

# custom.cpp lowers exactly these two CUSTOM codes; any other throws.
NNCASE19_CUSTOM_CODES = frozenset({"FlexRandomUniform", "TFLite_Detection_PostProcess"})

# nncase 1.9 bundles a TFLite schema that ends at ASSIGN_VARIABLE (144). For a newer opcode
# (GELU = 150, RANDOM_UNIFORM = 148, ...) EnumNameBuiltinOperator() returns "", so its error
# message carries a blank name.
NNCASE19_SCHEMA_LAST_OPCODE = 144

NNCASE02_TFLITE_OPS = _words(
    """
    ABS ADD AVERAGE_POOL_2D CEIL CONCATENATION CONV_2D COS DEPTHWISE_CONV_2D DIV EXP FLOOR
    FULLY_CONNECTED L2_NORMALIZATION LEAKY_RELU LOG LOGISTIC MAX_POOL_2D MAXIMUM MEAN MINIMUM MUL NEG
    PAD REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SIN
    SLICE SOFTMAX SPACE_TO_BATCH_ND STRIDED_SLICE SUB SUM TRANSPOSE TRANSPOSE_CONV
    """)

NNCASE19_ONNX_OPS = _words(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh AveragePool BatchNormalization Cast Ceil Celu Clip
    Compress Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
    DequantizeLinear Div Dropout Elu Equal Erf Exp Expand Flatten Floor GRU Gather GatherElements
    GatherND Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual HardSigmoid HardSwish Hardmax
    Identity InstanceNormalization LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log
    LogSoftmax LpNormalization MatMul Max MaxPool Min Mul Neg Not OneHot PRelu Pad Pow QuantizeLinear
    RandomNormal RandomNormalLike RandomUniform RandomUniformLike ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape
    Resize ReverseSequence RoiAlign Round Rsqrt Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax
    Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tanh ThresholdedRelu Tile TopK Transpose
    Trilu Unsqueeze Upsample Where
    """)

NNCASE02_ONNX_OPS = _words(
    """
    Abs Add AveragePool Ceil Concat Constant Conv ConvTranspose Cos Div Exp Floor LpNormalization
    LeakyRelu Log MatMul MaxPool Max Min Mul Neg Pad ReduceMax ReduceMean ReduceMin ReduceSum Relu
    Reshape Resize Sin Slice Softmax SpaceToDepth Sqrt Squeeze Sub Transpose
    """)


@dataclass(frozen=True)
class CompilerTable:
    key: str  # the --compiler value
    title: str
    kmodel_version: int
    tflite_ops: frozenset[str]
    custom_codes: frozenset[str]
    onnx_ops: frozenset[str]
    unsupported_tflite: str  # format with {op}
    unsupported_custom: str  # format with {code}
    unsupported_onnx: str  # format with {op}
    verified_here: bool  # whether this machine can run the compiler to check the table


COMPILERS: dict[str, CompilerTable] = {
    "nncase1.9": CompilerTable(
        key="nncase1.9",
        title="nncase 1.9",
        kmodel_version=5,
        tflite_ops=NNCASE19_TFLITE_OPS,
        custom_codes=NNCASE19_CUSTOM_CODES,
        onnx_ops=NNCASE19_ONNX_OPS,
        unsupported_tflite="Unsupported tflite opcode: {op}",
        unsupported_custom="Unsupported tflite CUSTOM code: {code}",
        unsupported_onnx="Not supported ONNX opcode: {op}",
        verified_here=True,
    ),
    "nncase0.2": CompilerTable(
        key="nncase0.2",
        title="nncase 0.2 (ncc v0.2.0-beta4)",
        kmodel_version=4,
        tflite_ops=NNCASE02_TFLITE_OPS,
        custom_codes=frozenset(),
        onnx_ops=NNCASE02_ONNX_OPS,
        unsupported_tflite="Not supported tflite opcode: {op}",
        unsupported_custom="Not supported tflite opcode: CUSTOM",
        unsupported_onnx="Not supported ONNX opcode: {op}",
        verified_here=False,
    ),
}
DEFAULT_COMPILER = "nncase1.9"
