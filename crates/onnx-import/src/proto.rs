//! The parts of the ONNX protobuf schema (`onnx.proto`, IR version 3 and later) that the
//! importer reads, declared with prost's derive so no `protoc` or build step is needed.
//!
//! Field numbers are those of the ONNX schema. Fields the importer never reads (subgraphs of
//! control-flow attributes, training info, local functions' bodies, doc strings) are left out;
//! protobuf decoding skips unknown fields, so files that carry them still decode.

/// A whole ONNX file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// IR version of the file format.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Tool that wrote the file (`pytorch`, …).
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Version of that tool.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// The network.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Operator sets the graph uses, one per domain.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Local functions (the importer supports none; their presence is reported).
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
}

/// An operator set and its version.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// Domain (`""` or `ai.onnx` for the standard operators).
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Version of the operator set.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// A local function; only its name is read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionProto {
    /// Function name (the op type nodes call it by).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Domain of the function.
    #[prost(string, tag = "10")]
    pub domain: String,
}

/// A graph: nodes in topological order, weights, inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// Nodes, in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Weights and other constants.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Inputs (before IR version 4 this also lists the initialisers).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Sparse initialisers (not supported; their presence is reported).
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
}

/// A sparse tensor; never read beyond its presence.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseTensorProto {
    /// Dense shape.
    #[prost(int64, repeated, tag = "3")]
    pub dims: Vec<i64>,
}

/// One operator application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Input tensor names (`""` for an omitted optional input).
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output tensor names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name (may be empty).
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator, e.g. `Conv`.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Operator domain (`""` for the standard operators).
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// A named attribute of a node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// Attribute name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// A float value.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// An integer value.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// A string value (bytes).
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// A tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Float values.
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// Integer values.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// Which of the value fields is set (`AttributeType`).
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `AttributeProto.type` values the importer reads.
pub mod attribute_type {
    /// A float (`f`).
    pub const FLOAT: i32 = 1;
    /// An integer (`i`).
    pub const INT: i32 = 2;
    /// A string (`s`).
    pub const STRING: i32 = 3;
    /// A tensor (`t`).
    pub const TENSOR: i32 = 4;
    /// Floats (`floats`).
    pub const FLOATS: i32 = 6;
    /// Integers (`ints`).
    pub const INTS: i32 = 7;
}

/// A constant tensor: an initialiser or a `Constant` node's value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Shape.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type (`data_type` constants).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Values of a float tensor, when not in `raw_data`.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Values of int32, int16, int8, uint8, bool and float16 tensors, when not in `raw_data`.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// Values of an int64 tensor, when not in `raw_data`.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Tensor name.
    #[prost(string, tag = "8")]
    pub name: String,
    /// Values as little-endian bytes.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    /// Values of a double tensor, when not in `raw_data`.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// Where the values live: 0 in this file, 1 in an external file.
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `TensorProto.data_type` values the importer reads.
pub mod data_type {
    /// 32-bit float.
    pub const FLOAT: i32 = 1;
    /// 32-bit integer.
    pub const INT32: i32 = 6;
    /// 64-bit integer.
    pub const INT64: i32 = 7;
    /// 16-bit float.
    pub const FLOAT16: i32 = 10;
    /// 64-bit float.
    pub const DOUBLE: i32 = 11;
}

/// A graph input or output: a name and a type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// Tensor name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its type (a tensor type for the graphs the importer reads).
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// A type; only tensor types are read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// A dense tensor type.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// Element type and shape of a tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorTypeProto {
    /// Element type (`data_type` constants).
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// Shape, when known.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// A tensor shape: one entry per axis.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// The axes.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// One axis: a fixed size or a symbolic name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    /// The size or symbol.
    #[prost(oneof = "DimensionValue", tags = "1, 2")]
    pub value: Option<DimensionValue>,
}

/// A fixed size or a symbolic name of an axis.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum DimensionValue {
    /// A fixed size.
    #[prost(int64, tag = "1")]
    DimValue(i64),
    /// A symbolic size (`batch`, `N`, …).
    #[prost(string, tag = "2")]
    DimParam(String),
}
