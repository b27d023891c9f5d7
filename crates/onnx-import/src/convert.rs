//! The graph walk: from the image input to the logits, node by node, into a [`ModelSpec`]'s
//! layer list and its named tensors (design §3.6).
//!
//! A chain of single-consumer nodes becomes a list of layers; a conv absorbs the
//! BatchNormalization and the ReLU/ReLU6 that follow it. A tensor used by several nodes is a
//! fork: the walk follows each branch to the node where they all meet, which must be an `Add`
//! (a residual block: `save` … `add`, the shorter branch on the skip path) or a `Concat` (an
//! inception-style block). Any other operator, attribute or shape is an error naming the node.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use cnn_models::spec::{ConvSpec, HeightWidth, InputShape, LayerSpec, LinearSpec, ModelSpec};

use crate::constants::{decode_tensor, Constant, Values};
use crate::error::{OnnxError, Result};
use crate::proto::{attribute_type, AttributeProto, DimensionValue, ModelProto, NodeProto};

/// Default-domain opset versions the importer accepts.
pub const OPSETS: std::ops::RangeInclusive<i64> = 11..=23;

/// The operators the importer reads, as listed in error messages.
pub const SUPPORTED_OPS: &str = "Conv, BatchNormalization (after a Conv), Relu, Clip (ReLU6), \
    MaxPool, AveragePool, GlobalAveragePool, ReduceMean over height and width, Add, Concat, \
    Flatten, Reshape (flattening), Gemm, MatMul (+ Add), Identity, Dropout and Constant";

/// What the walk produced.
pub(crate) struct Converted {
    pub spec: ModelSpec,
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub opset: i64,
    pub nodes: usize,
    pub batch_norms: usize,
}

/// The shape of the activation at a point of the walk.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    /// A C×H×W map.
    Map { c: usize, h: usize, w: usize },
    /// A map pooled to C×1×1 in ONNX, already a vector of C in the spec (after global
    /// pooling, before the flatten that ONNX needs and the spec does not).
    Pooled(usize),
    /// A vector.
    Flat(usize),
}

impl Act {
    fn values(&self) -> usize {
        match *self {
            Act::Map { c, h, w } => c.saturating_mul(h).saturating_mul(w),
            Act::Pooled(n) | Act::Flat(n) => n,
        }
    }
}

struct Walk<'a> {
    path: PathBuf,
    nodes: &'a [NodeProto],
    opset: i64,
    consts: HashMap<&'a str, Constant>,
    folded: Vec<bool>,
    visited: Vec<bool>,
    users: HashMap<&'a str, Vec<usize>>,
    output: &'a str,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    names: HashSet<String>,
    fallback: usize,
    slots: usize,
    batch_norms: usize,
}

pub(crate) fn convert(path: &Path, model: &ModelProto, name: &str) -> Result<Converted> {
    let graph_err = |message: String| OnnxError::Graph {
        path: path.to_path_buf(),
        message,
    };
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::NotOnnx {
        path: path.to_path_buf(),
        message: "the file holds no graph".into(),
    })?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| {
            graph_err("the file imports no version of the standard operator set".into())
        })?;
    if !OPSETS.contains(&opset) {
        return Err(graph_err(format!(
            "opset {opset} is not supported (opsets {} to {} are)",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    if !graph.sparse_initializer.is_empty() {
        return Err(graph_err("sparse initialisers are not supported".into()));
    }
    let mut consts: HashMap<&str, Constant> = HashMap::new();
    for t in &graph.initializer {
        let c = decode_tensor(path, t, &format!("initialiser `{}`", t.name))?;
        consts.insert(t.name.as_str(), c);
    }
    // the image input: the one graph input that is not an initialiser
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !consts.contains_key(i.name.as_str()))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(graph_err(format!(
            "the graph has {} inputs besides its weights ({}); cnnsplit models take one image batch",
            inputs.len(),
            inputs.iter().map(|i| format!("`{}`", i.name)).collect::<Vec<_>>().join(", ")
        )));
    };
    let [output] = graph.output.as_slice() else {
        return Err(graph_err(format!(
            "the graph has {} outputs; cnnsplit models have one (the logits)",
            graph.output.len()
        )));
    };
    let shape = input_shape(path, input)?;

    let nodes = graph.node.as_slice();
    let mut folded = vec![false; nodes.len()];
    let mut produced: HashSet<&str> = HashSet::new();
    produced.insert(input.name.as_str());
    for (i, n) in nodes.iter().enumerate() {
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return Err(unsupported(
                path,
                n,
                format!(
                    "operator domain `{}` is not supported (only the standard operators are)",
                    n.domain
                ),
            ));
        }
        if let Some(c) = fold_constant(path, n, &consts)? {
            folded[i] = true;
            if let Some(out) = n.output.first() {
                if consts.contains_key(out.as_str()) || produced.contains(out.as_str()) {
                    return Err(unsupported(
                        path,
                        n,
                        format!("writes `{out}`, which an earlier node, an initialiser or the graph input already defines"),
                    ));
                }
                consts.insert(out.as_str(), c);
            }
            continue;
        }
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            if !consts.contains_key(inp.as_str()) && !produced.contains(inp.as_str()) {
                return Err(unsupported(
                    path,
                    n,
                    format!(
                        "input `{inp}` is neither the graph input, an initialiser nor an output of an earlier node"
                    ),
                ));
            }
        }
        for out in n.output.iter().filter(|s| !s.is_empty()) {
            if !produced.insert(out.as_str()) || consts.contains_key(out.as_str()) {
                return Err(unsupported(
                    path,
                    n,
                    format!("writes `{out}`, which an earlier node, an initialiser or the graph input already defines"),
                ));
            }
        }
    }
    let mut users: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if folded[i] {
            continue;
        }
        let mut seen = BTreeSet::new();
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            if !consts.contains_key(inp.as_str()) && seen.insert(inp.as_str()) {
                users.entry(inp.as_str()).or_default().push(i);
            }
        }
    }
    let mut walk = Walk {
        path: path.to_path_buf(),
        nodes,
        opset,
        consts,
        folded,
        visited: vec![false; nodes.len()],
        users,
        output: output.name.as_str(),
        tensors: BTreeMap::new(),
        names: HashSet::new(),
        fallback: 0,
        slots: 0,
        batch_norms: 0,
    };
    let act = Act::Map {
        c: shape.channels,
        h: shape.height,
        w: shape.width,
    };
    let (layers, end, act) = walk.chain(input.name.as_str(), act, None)?;
    if end != walk.output {
        return Err(graph_err(format!(
            "the walk from the input ends at `{end}`, not at the graph output `{}`",
            walk.output
        )));
    }
    let num_classes = match (layers.last(), act) {
        (Some(LayerSpec::Linear(l)), Act::Flat(n)) if l.out_features == n => n,
        _ => {
            return Err(graph_err(
                "the graph does not end in a fully connected layer (Gemm or MatMul) whose \
                 output is the graph output; cnnsplit needs the logits (export without a final \
                 Softmax)"
                    .into(),
            ))
        }
    };
    let unvisited = (0..nodes.len())
        .filter(|i| !walk.folded[*i] && !walk.visited[*i])
        .count();
    if unvisited > 0 {
        tracing::debug!(
            unvisited,
            "nodes not on the path from the input to the logits were ignored"
        );
    }
    let spec = ModelSpec {
        name: name.to_string(),
        input: shape,
        num_classes,
        conv_init: Default::default(),
        layers,
    };
    Ok(Converted {
        spec,
        tensors: walk.tensors,
        opset,
        nodes: nodes.len(),
        batch_norms: walk.batch_norms,
    })
}

fn input_shape(path: &Path, input: &crate::proto::ValueInfoProto) -> Result<InputShape> {
    let err = |message: String| OnnxError::Graph {
        path: path.to_path_buf(),
        message: format!("graph input `{}`: {message}", input.name),
    };
    let tt = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| err("is not a tensor".into()))?;
    if tt.elem_type != crate::proto::data_type::FLOAT {
        return Err(err(format!(
            "has element type {}, cnnsplit models take float images",
            tt.elem_type
        )));
    }
    let dims: Vec<Option<i64>> = tt
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(DimensionValue::DimValue(v)) => Some(v),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let fixed = |d: Option<i64>| d.and_then(|v| usize::try_from(v).ok()).filter(|v| *v > 0);
    match dims.as_slice() {
        [_, c, h, w] => match (fixed(*c), fixed(*h), fixed(*w)) {
            (Some(channels), Some(height), Some(width)) => Ok(InputShape {
                channels,
                height,
                width,
            }),
            _ => Err(err(format!(
                "needs fixed channels, height and width, the file gives {}",
                describe_dims(&dims)
            ))),
        },
        _ => Err(err(format!(
            "has shape {}, cnnsplit models take a batch of images [N, C, H, W]",
            describe_dims(&dims)
        ))),
    }
}

fn describe_dims(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

fn node_label(n: &NodeProto) -> String {
    if !n.name.is_empty() {
        n.name.clone()
    } else {
        n.output
            .first()
            .map_or_else(|| "(unnamed)".into(), |o| format!("producing {o}"))
    }
}

fn unsupported(path: &Path, n: &NodeProto, message: String) -> OnnxError {
    OnnxError::Unsupported {
        path: path.to_path_buf(),
        node: node_label(n),
        op: n.op_type.clone(),
        message,
    }
}

fn attr<'n>(n: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// Evaluate `Constant` nodes and `Identity`/`Cast` of constants.
fn fold_constant(
    path: &Path,
    n: &NodeProto,
    consts: &HashMap<&str, Constant>,
) -> Result<Option<Constant>> {
    let input_const = || n.input.first().and_then(|i| consts.get(i.as_str()));
    match n.op_type.as_str() {
        "Constant" => {
            let a = n
                .attribute
                .first()
                .ok_or_else(|| unsupported(path, n, "has no value attribute".into()))?;
            let c = match a.name.as_str() {
                "value" => {
                    let t = a
                        .t
                        .as_ref()
                        .ok_or_else(|| unsupported(path, n, "`value` holds no tensor".into()))?;
                    decode_tensor(
                        path,
                        t,
                        &format!("the value of Constant node `{}`", node_label(n)),
                    )?
                }
                "value_float" => Constant {
                    dims: vec![],
                    values: Values::Float(vec![a.f]),
                },
                "value_floats" => Constant {
                    dims: vec![a.floats.len()],
                    values: Values::Float(a.floats.clone()),
                },
                "value_int" => Constant {
                    dims: vec![],
                    values: Values::Int(vec![a.i]),
                },
                "value_ints" => Constant {
                    dims: vec![a.ints.len()],
                    values: Values::Int(a.ints.clone()),
                },
                other => {
                    return Err(unsupported(
                        path,
                        n,
                        format!("a constant given as `{other}` is not supported"),
                    ))
                }
            };
            Ok(Some(c))
        }
        "Identity" => Ok(input_const().cloned()),
        "Cast" => Ok(match input_const() {
            Some(c) => {
                let to = attr(n, "to").map_or(0, |a| a.i) as i32;
                use crate::proto::data_type as dt;
                match to {
                    dt::FLOAT | dt::DOUBLE | dt::FLOAT16 => Some(c.cast(true)),
                    dt::INT64 | dt::INT32 => Some(c.cast(false)),
                    other => {
                        return Err(unsupported(
                            path,
                            n,
                            format!("a cast to element type {other} is not supported"),
                        ))
                    }
                }
            }
            None => None,
        }),
        _ => Ok(None),
    }
}

/// The module path PyTorch's TorchScript exporter encodes in node names:
/// `/layer1/layer1.0/conv1/Conv` → `layer1.0.conv1`.
fn module_path(node_name: &str) -> Option<String> {
    let rest = node_name.strip_prefix('/')?;
    let mut segments: Vec<&str> = rest.split('/').collect();
    segments.pop();
    let mut out = String::new();
    for s in segments.into_iter().filter(|s| !s.is_empty()) {
        if out.is_empty() || s.starts_with(&format!("{out}.")) {
            out = s.to_string();
        } else {
            out = format!("{out}.{s}");
        }
    }
    (!out.is_empty()).then_some(out)
}

impl<'a> Walk<'a> {
    fn node(&self, i: usize) -> &'a NodeProto {
        &self.nodes[i]
    }

    fn err(&self, i: usize, message: impl Into<String>) -> OnnxError {
        unsupported(&self.path, self.node(i), message.into())
    }

    fn users(&self, tensor: &str) -> Vec<usize> {
        self.users.get(tensor).cloned().unwrap_or_default()
    }

    /// The one node that reads `tensor`, when exactly one does and it is not the graph output.
    fn sole_user(&self, tensor: &str) -> Option<usize> {
        match self.users(tensor).as_slice() {
            [u] if tensor != self.output => Some(*u),
            _ => None,
        }
    }

    fn constant(&self, i: usize, input: usize, what: &str) -> Result<&Constant> {
        let n = self.node(i);
        let name = n
            .input
            .get(input)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.err(i, format!("has no {what} input")))?;
        self.consts.get(name.as_str()).ok_or_else(|| {
            self.err(
                i,
                format!("its {what} (`{name}`) is computed in the graph; only constant {what}s are supported"),
            )
        })
    }

    fn optional_constant(&self, i: usize, input: usize, what: &str) -> Result<Option<&Constant>> {
        match self.node(i).input.get(input) {
            Some(s) if !s.is_empty() => self.constant(i, input, what).map(Some),
            _ => Ok(None),
        }
    }

    fn ints(&self, i: usize, name: &str) -> Result<Option<Vec<i64>>> {
        match attr(self.node(i), name) {
            None => Ok(None),
            Some(a) if a.r#type == attribute_type::INTS || a.r#type == 0 => {
                Ok(Some(a.ints.clone()))
            }
            Some(a) => Err(self.err(
                i,
                format!(
                    "attribute `{name}` has type {}, expected integers",
                    a.r#type
                ),
            )),
        }
    }

    fn int(&self, i: usize, name: &str, default: i64) -> Result<i64> {
        match attr(self.node(i), name) {
            None => Ok(default),
            Some(a) if a.r#type == attribute_type::INT || a.r#type == 0 => Ok(a.i),
            Some(a) => Err(self.err(
                i,
                format!(
                    "attribute `{name}` has type {}, expected an integer",
                    a.r#type
                ),
            )),
        }
    }

    fn float(&self, i: usize, name: &str, default: f32) -> Result<f32> {
        match attr(self.node(i), name) {
            None => Ok(default),
            Some(a) if a.r#type == attribute_type::FLOAT || a.r#type == 0 => Ok(a.f),
            Some(a) => Err(self.err(
                i,
                format!("attribute `{name}` has type {}, expected a float", a.r#type),
            )),
        }
    }

    fn string(&self, i: usize, name: &str) -> Result<Option<String>> {
        match attr(self.node(i), name) {
            None => Ok(None),
            Some(a) if a.r#type == attribute_type::STRING || a.r#type == 0 => {
                Ok(Some(String::from_utf8_lossy(&a.s).into_owned()))
            }
            Some(a) => Err(self.err(
                i,
                format!(
                    "attribute `{name}` has type {}, expected a string",
                    a.r#type
                ),
            )),
        }
    }

    /// Only the first output may be read by other nodes (MaxPool's indices, Dropout's mask,
    /// BatchNormalization's training outputs).
    fn only_first_output(&self, i: usize) -> Result<()> {
        for extra in self.node(i).output.iter().skip(1).filter(|s| !s.is_empty()) {
            if !self.users(extra).is_empty() || extra == self.output {
                return Err(self.err(
                    i,
                    format!("its extra output `{extra}` is used; only the first output may be"),
                ));
            }
        }
        Ok(())
    }

    fn out(&self, i: usize) -> Result<&'a str> {
        self.node(i)
            .output
            .first()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_str())
            .ok_or_else(|| self.err(i, "has no output"))
    }

    /// A unique layer name: the parameter's name without its suffix (`layer1.0.conv1.weight`
    /// → `layer1.0.conv1`), else the module path in the node name, else `{kind}{k}`.
    fn layer_name(&mut self, param: Option<&str>, suffix: &str, node: usize, kind: &str) -> String {
        let from_param = param
            .filter(|p| !p.contains("::"))
            .and_then(|p| p.strip_suffix(suffix))
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        let base = from_param
            .or_else(|| module_path(&self.node(node).name))
            .unwrap_or_else(|| {
                self.fallback += 1;
                format!("{kind}{}", self.fallback)
            });
        let mut name = base.clone();
        let mut k = 1;
        while self.names.contains(&name) {
            k += 1;
            name = format!("{base}_{k}");
        }
        self.names.insert(name.clone());
        name
    }

    fn put(&mut self, name: String, dims: Vec<usize>, values: Vec<f32>) {
        self.tensors.insert(name, (dims, values));
    }

    /// Convert the nodes from `cur` on, until the graph output or, with `until`, until the
    /// only reader of the current tensor is that join node.
    fn chain(
        &mut self,
        start: &'a str,
        start_act: Act,
        until: Option<usize>,
    ) -> Result<(Vec<LayerSpec>, &'a str, Act)> {
        let mut layers = Vec::new();
        let (mut cur, mut act) = (start, start_act);
        loop {
            let users = self.users(cur);
            if let Some(j) = until {
                if users == [j] {
                    return Ok((layers, cur, act));
                }
            }
            if cur == self.output {
                if users.is_empty() && until.is_none() {
                    return Ok((layers, cur, act));
                }
                return Err(OnnxError::Graph {
                    path: self.path.clone(),
                    message: format!(
                        "the graph output `{cur}` is also read by other nodes; cnnsplit needs the logits to be the last value"
                    ),
                });
            }
            match users.as_slice() {
                [] => {
                    return Err(OnnxError::Graph {
                        path: self.path.clone(),
                        message: format!(
                            "`{cur}` is read by no node and is not the graph output (a branch that never rejoins)"
                        ),
                    })
                }
                [n] => {
                    let n = *n;
                    if self.visited[n] {
                        return Err(self.err(n, "joins paths that do not start at one fork (only residual adds and concats of branches from one tensor are supported)"));
                    }
                    let (l, out, a) = self.convert_node(n, cur, act)?;
                    layers.extend(l);
                    cur = out;
                    act = a;
                }
                many => {
                    let (l, out, a) = self.fork(cur, act, many.to_vec())?;
                    layers.extend(l);
                    cur = out;
                    act = a;
                }
            }
        }
    }

    fn reachable(&self, from: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            for out in &self.node(i).output {
                stack.extend(self.users(out));
            }
        }
        seen
    }

    fn data_inputs(&self, i: usize) -> Vec<&'a str> {
        self.node(i)
            .input
            .iter()
            .filter(|s| !s.is_empty() && !self.consts.contains_key(s.as_str()))
            .map(|s| s.as_str())
            .collect()
    }

    /// `cur` is read by several nodes: follow each branch to the node where they meet.
    fn fork(
        &mut self,
        cur: &'a str,
        act: Act,
        users: Vec<usize>,
    ) -> Result<(Vec<LayerSpec>, &'a str, Act)> {
        let mut common: Option<BTreeSet<usize>> = None;
        for &u in &users {
            let r = self.reachable(u);
            common = Some(match common {
                None => r,
                Some(c) => c.intersection(&r).copied().collect(),
            });
        }
        let join = common.and_then(|c| c.first().copied()).ok_or_else(|| OnnxError::Graph {
            path: self.path.clone(),
            message: format!(
                "`{cur}` is read by {} nodes whose paths never meet again (graphs with several outputs are not supported)",
                users.len()
            ),
        })?;
        let jn = self.node(join);
        if jn.op_type != "Add" && jn.op_type != "Concat" {
            return Err(self.err(
                join,
                format!("branches from `{cur}` meet here; only Add (a residual block) and Concat join branches"),
            ));
        }
        let join_inputs = self.data_inputs(join);
        if join_inputs.len() != jn.input.iter().filter(|s| !s.is_empty()).count() {
            return Err(self.err(
                join,
                "joins branches together with a constant; not supported",
            ));
        }
        // each branch: (layers, end tensor, act)
        let mut branches: Vec<(Vec<LayerSpec>, &'a str, Act)> = Vec::new();
        for &u in &users {
            if u == join {
                branches.push((Vec::new(), cur, act));
                continue;
            }
            let (mut l, out, a) = self.convert_node(u, cur, act)?;
            let (rest, end, a) = self.chain(out, a, Some(join))?;
            l.extend(rest);
            branches.push((l, end, a));
        }
        let mut ends: Vec<&str> = branches.iter().map(|b| b.1).collect();
        ends.sort_unstable();
        let mut want = join_inputs.clone();
        want.sort_unstable();
        if ends != want {
            return Err(self.err(
                join,
                format!(
                    "its inputs ({}) are not exactly the ends of the branches from `{cur}` ({})",
                    join_inputs.join(", "),
                    ends.join(", ")
                ),
            ));
        }
        self.visited[join] = true;
        self.only_first_output(join)?;
        let out = self.out(join)?;
        // branches in the join's input order
        let ordered: Vec<(Vec<LayerSpec>, &'a str, Act)> = join_inputs
            .iter()
            .map(|name| {
                branches
                    .iter()
                    .find(|b| b.1 == *name)
                    .cloned()
                    .expect("matched above")
            })
            .collect();
        if jn.op_type == "Add" {
            let [a, b] = ordered.as_slice() else {
                return Err(self.err(
                    join,
                    format!("adds {} branches; a residual add takes two", ordered.len()),
                ));
            };
            if a.2 != b.2 {
                return Err(self.err(
                    join,
                    format!("adds values of different shapes ({:?} and {:?})", a.2, b.2),
                ));
            }
            let convs =
                |l: &[LayerSpec]| l.iter().filter(|x| matches!(x, LayerSpec::Conv(_))).count();
            // the skip path: the identity branch, else the one with fewer convs (ties: input 1)
            let (main, skip) = if a.0.is_empty() || (!b.0.is_empty() && convs(&a.0) < convs(&b.0)) {
                (b, a)
            } else {
                (a, b)
            };
            if skip.0.iter().any(|l| !matches!(l, LayerSpec::Conv(_))) {
                return Err(self.err(
                    join,
                    "the shorter branch of this residual add holds layers other than convs (+BN); \
                     a skip path may hold convs only",
                ));
            }
            self.slots += 1;
            let slot = format!("skip{}", self.slots);
            let mut layers = vec![LayerSpec::Save { slot: slot.clone() }];
            layers.extend(main.0.iter().cloned());
            layers.push(LayerSpec::Add {
                slot,
                shortcut: skip.0.clone(),
            });
            Ok((layers, out, main.2))
        } else {
            let axis = self.int(join, "axis", 1)?;
            let (mut channels, mut hw) = (0, None);
            for (l, _, a) in &ordered {
                if l.is_empty() {
                    return Err(self.err(
                        join,
                        "concatenates the fork's input itself; each branch needs a layer",
                    ));
                }
                match *a {
                    Act::Map { c, h, w } if axis == 1 || axis == -3 => {
                        if hw.is_some_and(|x| x != (h, w)) {
                            return Err(self.err(join, "concatenates maps of different sizes"));
                        }
                        hw = Some((h, w));
                        channels = c.saturating_add(channels);
                    }
                    _ => {
                        return Err(self.err(join, format!("concatenation along axis {axis}; only maps along channels (axis 1) are supported")))
                    }
                }
            }
            let (h, w) = hw.expect("at least two branches");
            Ok((
                vec![LayerSpec::Concat {
                    branches: ordered.into_iter().map(|b| b.0).collect(),
                }],
                out,
                Act::Map { c: channels, h, w },
            ))
        }
    }

    /// Convert node `i` reading `input` (of shape `act`), with what it absorbs.
    fn convert_node(
        &mut self,
        i: usize,
        input: &'a str,
        act: Act,
    ) -> Result<(Vec<LayerSpec>, &'a str, Act)> {
        if self.visited[i] {
            return Err(self.err(
                i,
                "is reached twice on the way from the input to the logits",
            ));
        }
        self.visited[i] = true;
        let n = self.node(i);
        if n.input.first().map(String::as_str) != Some(input) {
            return Err(self.err(
                i,
                format!("reads `{input}` as a parameter, not as its data input"),
            ));
        }
        self.only_first_output(i)?;
        let out = self.out(i)?;
        let map = |me: &Self| match act {
            Act::Map { c, h, w } => Ok((c, h, w)),
            _ => Err(me.err(i, "needs a C×H×W map, its input is a vector")),
        };
        match n.op_type.as_str() {
            "Conv" => self.conv(i, act),
            "Relu" => Ok((vec![LayerSpec::Relu], out, act)),
            "Clip" => {
                let relu6 = self.clip_is_relu6(i)?;
                Ok((
                    vec![if relu6 {
                        LayerSpec::Relu6
                    } else {
                        LayerSpec::Relu
                    }],
                    out,
                    act,
                ))
            }
            "Identity" => Ok((vec![], out, act)),
            "Dropout" => {
                let p = if self.opset >= 12 {
                    match self.optional_constant(i, 1, "ratio")? {
                        Some(c) => c.floats().first().copied().unwrap_or(0.5),
                        None => 0.5,
                    }
                } else {
                    self.float(i, "ratio", 0.5)?
                };
                if !(0.0..1.0).contains(&p) {
                    return Err(self.err(i, format!("drop ratio {p} is outside [0, 1)")));
                }
                Ok((vec![LayerSpec::Dropout { p }], out, act))
            }
            "MaxPool" | "AveragePool" => {
                let (c, h, w) = map(self)?;
                let (kernel, stride, padding) = self.pool_geometry(i)?;
                let oh = pooled(h, kernel, stride, padding);
                let ow = pooled(w, kernel, stride, padding);
                let (Some(oh), Some(ow)) = (oh, ow) else {
                    return Err(self.err(
                        i,
                        format!("a {kernel}×{kernel} window does not fit the {h}×{w} map"),
                    ));
                };
                let layer = if n.op_type == "MaxPool" {
                    if self.int(i, "storage_order", 0)? != 0 {
                        return Err(self.err(i, "storage_order = 1 is not supported"));
                    }
                    LayerSpec::MaxPool {
                        kernel,
                        stride,
                        padding,
                    }
                } else {
                    LayerSpec::AvgPool {
                        kernel,
                        stride,
                        padding,
                        count_include_pad: self.int(i, "count_include_pad", 0)? != 0,
                    }
                };
                Ok((vec![layer], out, Act::Map { c, h: oh, w: ow }))
            }
            "GlobalAveragePool" => {
                let (c, _, _) = map(self)?;
                Ok((vec![LayerSpec::GlobalAvgPool], out, Act::Pooled(c)))
            }
            "ReduceMean" => {
                let (c, _, _) = map(self)?;
                let axes = if self.opset >= 18 {
                    match self.optional_constant(i, 1, "axes")? {
                        Some(k) => k.ints().map(<[i64]>::to_vec).unwrap_or_default(),
                        None => vec![],
                    }
                } else {
                    self.ints(i, "axes")?.unwrap_or_default()
                };
                let mut norm: Vec<i64> = axes
                    .iter()
                    .map(|a| if *a < 0 { a + 4 } else { *a })
                    .collect();
                norm.sort_unstable();
                if norm != [2, 3] {
                    return Err(self.err(i, format!("a mean over axes {axes:?}; only the mean over height and width (axes 2, 3) is supported")));
                }
                let keep = self.int(i, "keepdims", 1)? != 0;
                Ok((
                    vec![LayerSpec::GlobalAvgPool],
                    out,
                    if keep { Act::Pooled(c) } else { Act::Flat(c) },
                ))
            }
            "Flatten" => {
                let axis = self.int(i, "axis", 1)?;
                if axis != 1 {
                    return Err(self.err(i, format!("flattening from axis {axis}; only axis 1 (keep the batch) is supported")));
                }
                Ok(flatten(act, out))
            }
            "Reshape" => {
                let shape = self.constant(i, 1, "shape")?;
                let Some(s) = shape.ints() else {
                    return Err(self.err(i, "its shape is not an integer tensor"));
                };
                let total = act.values() as i64;
                let flattens = match *s {
                    // [batch | 0 | -1, C·H·W] or [batch | 0, -1]
                    [b, f] => (f == total && b >= -1) || (f == -1 && b >= 0),
                    _ => false,
                };
                if !flattens {
                    return Err(self.err(
                        i,
                        format!(
                            "reshapes to {s:?}; only a flatten to [batch, {total}] is supported"
                        ),
                    ));
                }
                Ok(flatten(act, out))
            }
            "Gemm" => self.gemm(i, act),
            "MatMul" => self.matmul(i, act),
            "BatchNormalization" => Err(self.err(
                i,
                "a BatchNormalization that does not directly follow a Conv is not supported \
                 (cnnsplit keeps BN inside a conv block)",
            )),
            "Add" => Err(self.err(
                i,
                "adds a constant; a constant add is supported only as the bias of a MatMul",
            )),
            other => Err(self.err(
                i,
                format!("operator {other} is not supported; cnnsplit imports {SUPPORTED_OPS}"),
            )),
        }
    }

    fn clip_is_relu6(&self, i: usize) -> Result<bool> {
        let bound = |input: usize, name: &str, default: f32| -> Result<f32> {
            if self.opset >= 11 {
                Ok(match self.optional_constant(i, input, name)? {
                    Some(c) => *c
                        .floats()
                        .first()
                        .ok_or_else(|| self.err(i, format!("its {name} is empty")))?,
                    None => default,
                })
            } else {
                self.float(i, name, default)
            }
        };
        let lo = bound(1, "min", f32::NEG_INFINITY)?;
        let hi = bound(2, "max", f32::INFINITY)?;
        match (lo, hi) {
            (0.0, 6.0) => Ok(true),
            (0.0, hi) if hi == f32::INFINITY => Ok(false),
            _ => Err(self.err(
                i,
                format!("clips to [{lo}, {hi}]; only ReLU6 [0, 6] and ReLU [0, ∞) are supported"),
            )),
        }
    }

    /// Kernel, stride and padding of a pool (square and symmetric only).
    fn pool_geometry(&self, i: usize) -> Result<(usize, usize, usize)> {
        if self.int(i, "ceil_mode", 0)? != 0 {
            return Err(self.err(i, "ceil_mode = 1 is not supported"));
        }
        if let Some(d) = self.ints(i, "dilations")? {
            if d.iter().any(|x| *x != 1) {
                return Err(self.err(i, format!("dilations {d:?} are not supported for pooling")));
            }
        }
        self.auto_pad_is_explicit(i)?;
        let kernel = self
            .ints(i, "kernel_shape")?
            .ok_or_else(|| self.err(i, "has no kernel_shape"))?;
        let strides = self
            .ints(i, "strides")?
            .unwrap_or_else(|| vec![1; kernel.len()]);
        let pads = self
            .ints(i, "pads")?
            .unwrap_or_else(|| vec![0; 2 * kernel.len()]);
        let square = |v: &[i64], what: &str| -> Result<usize> {
            match v {
                [a, b] if a == b && *a >= 0 => Ok(*a as usize),
                _ => Err(self.err(
                    i,
                    format!("{what} {v:?}: only square 2-D pooling is supported"),
                )),
            }
        };
        let k = square(&kernel, "kernel_shape")?;
        let s = square(&strides, "strides")?;
        let p = match pads.as_slice() {
            [t, l, b, r] if t == l && l == b && b == r && *t >= 0 => *t as usize,
            _ => {
                return Err(self.err(
                    i,
                    format!(
                        "pads {pads:?}: only equal padding on all sides is supported for pooling"
                    ),
                ))
            }
        };
        if k == 0 || s == 0 {
            return Err(self.err(i, "a zero kernel or stride"));
        }
        Ok((k, s, p))
    }

    fn auto_pad_is_explicit(&self, i: usize) -> Result<()> {
        match self.string(i, "auto_pad")?.as_deref() {
            None | Some("NOTSET") | Some("VALID") | Some("") => Ok(()),
            Some(other) => Err(self.err(
                i,
                format!("auto_pad = {other} is not supported (export with explicit pads)"),
            )),
        }
    }

    fn conv(&mut self, i: usize, act: Act) -> Result<(Vec<LayerSpec>, &'a str, Act)> {
        let Act::Map { c, h, w } = act else {
            return Err(self.err(i, "needs a C×H×W map, its input is a vector"));
        };
        let n = self.node(i);
        let weight = self.constant(i, 1, "weight")?.clone();
        let [o, ig, kh, kw] = weight.dims[..] else {
            return Err(self.err(
                i,
                format!(
                    "weight of shape {:?}; only 2-D convolutions are supported",
                    weight.dims
                ),
            ));
        };
        let bias = self.optional_constant(i, 2, "bias")?.cloned();
        if let Some(b) = &bias {
            if b.dims != [o] {
                return Err(self.err(i, format!("bias of shape {:?}, expected [{o}]", b.dims)));
            }
        }
        let group = self.int(i, "group", 1)?;
        let groups = if group == 1 && ig == c {
            1
        } else if group as usize == c && o == c && ig == 1 {
            c
        } else {
            return Err(self.err(i, format!(
                "group = {group} with {c} input and {o} output channels (weight {:?}); only ordinary \
                 (group 1) and depthwise (group = channels) convs are supported",
                weight.dims
            )));
        };
        if let Some(k) = self.ints(i, "kernel_shape")? {
            if k != [kh as i64, kw as i64] {
                return Err(self.err(
                    i,
                    format!("kernel_shape {k:?} does not match the weight's {kh}×{kw}"),
                ));
            }
        }
        self.auto_pad_is_explicit(i)?;
        let strides = self.ints(i, "strides")?.unwrap_or_else(|| vec![1, 1]);
        let dilations = self.ints(i, "dilations")?.unwrap_or_else(|| vec![1, 1]);
        let pads = self.ints(i, "pads")?.unwrap_or_else(|| vec![0, 0, 0, 0]);
        let positive = |v: i64| usize::try_from(v).ok().filter(|x| *x > 0);
        let stride = match strides[..] {
            [a, b] => match (positive(a), positive(b)) {
                (Some(h), Some(w)) => HeightWidth { h, w },
                _ => return Err(self.err(i, format!("strides {strides:?} must be positive"))),
            },
            _ => {
                return Err(self.err(
                    i,
                    format!("strides {strides:?}: only 2-D convolutions are supported"),
                ))
            }
        };
        let dilation = match dilations[..] {
            [a, b] if a == b && a > 0 => a as usize,
            _ => return Err(self.err(i, format!("dilations {dilations:?}: only the same positive dilation on both axes is supported"))),
        };
        let padding = match pads[..] {
            [t, l, b, r] if t == b && l == r && t >= 0 && l >= 0 => HeightWidth { h: t as usize, w: l as usize },
            _ => return Err(self.err(i, format!("pads {pads:?}: only symmetric padding (top = bottom, left = right) is supported"))),
        };
        let out_size = |len: usize, k: usize, s: usize, p: usize| -> Option<usize> {
            let span = dilation.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
            let padded = len.checked_add(p.checked_mul(2)?)?;
            (padded >= span).then(|| (padded - span) / s + 1)
        };
        let (Some(oh), Some(ow)) = (
            out_size(h, kh, stride.h, padding.h),
            out_size(w, kw, stride.w, padding.w),
        ) else {
            return Err(self.err(
                i,
                format!("a {kh}×{kw} kernel does not fit the {h}×{w} map"),
            ));
        };
        let name = self.layer_name(n.input.get(1).map(String::as_str), ".weight", i, "conv");
        self.put(
            format!("{name}.weight"),
            weight.dims.clone(),
            weight.floats(),
        );
        if let Some(b) = &bias {
            self.put(format!("{name}.bias"), vec![o], b.floats());
        }
        let mut cur = self.out(i)?;
        // absorb a following BatchNormalization
        let mut bn = None;
        if let Some(j) = self
            .sole_user(cur)
            .filter(|j| self.node(*j).op_type == "BatchNormalization")
        {
            self.visited[j] = true;
            if self.node(j).input.first().map(String::as_str) != Some(cur) {
                return Err(self.err(j, "reads the conv output as a parameter"));
            }
            self.only_first_output(j)?;
            if self.int(j, "training_mode", 0)? != 0 {
                return Err(self.err(j, "training_mode = 1; export the model in eval mode"));
            }
            let eps = self.float(j, "epsilon", 1e-5)?;
            let mut parts = Vec::new();
            for (k, what) in ["scale", "bias", "mean", "variance"].iter().enumerate() {
                let t = self.constant(j, k + 1, what)?;
                if t.dims != [o] {
                    return Err(
                        self.err(j, format!("{what} of shape {:?}, expected [{o}]", t.dims))
                    );
                }
                parts.push(t.floats());
            }
            // the model's BN uses ε = 1e-5: move the difference into the variance, which leaves
            // √(var + ε) and so the inference output unchanged
            let shift = eps as f64 - cnn_models::model::BN_EPS;
            parts[3]
                .iter_mut()
                .for_each(|v| *v = (*v as f64 + shift).max(0.0) as f32);
            let bn_name = self.layer_name(
                self.node(j).input.get(1).map(String::as_str),
                ".weight",
                j,
                "bn",
            );
            for (suffix, values) in ["weight", "bias", "running_mean", "running_var"]
                .iter()
                .zip(parts)
            {
                self.put(format!("{bn_name}.{suffix}"), vec![o], values);
            }
            self.batch_norms += 1;
            bn = Some(bn_name);
            cur = self.out(j)?;
        }
        // absorb a following ReLU or ReLU6
        let (mut relu, mut relu6) = (false, false);
        if let Some(j) = self.sole_user(cur) {
            match self.node(j).op_type.as_str() {
                "Relu" => relu = true,
                "Clip" => {
                    relu6 = self.clip_is_relu6(j)?;
                    relu = true;
                }
                _ => {}
            }
            if relu {
                self.visited[j] = true;
                if self.node(j).input.first().map(String::as_str) != Some(cur) {
                    return Err(self.err(j, "reads the conv output as a parameter"));
                }
                self.only_first_output(j)?;
                cur = self.out(j)?;
            }
        }
        let spec = ConvSpec {
            name,
            out_channels: o,
            kernel: HeightWidth { h: kh, w: kw },
            stride,
            padding,
            dilation,
            groups,
            bias: bias.is_some(),
            bn,
            relu,
            relu6,
        };
        Ok((
            vec![LayerSpec::Conv(spec)],
            cur,
            Act::Map { c: o, h: oh, w: ow },
        ))
    }

    fn linear_layer(
        &mut self,
        i: usize,
        in_features: usize,
        weight: Vec<f32>,
        out_features: usize,
        bias: Vec<f32>,
        mut cur: &'a str,
    ) -> Result<(Vec<LayerSpec>, &'a str, Act)> {
        let param = self.node(i).input.get(1).map(String::as_str);
        let name = self.layer_name(param, ".weight", i, "fc");
        self.put(
            format!("{name}.weight"),
            vec![out_features, in_features],
            weight,
        );
        self.put(format!("{name}.bias"), vec![out_features], bias);
        let mut relu = false;
        if let Some(j) = self
            .sole_user(cur)
            .filter(|j| self.node(*j).op_type == "Relu")
        {
            self.visited[j] = true;
            self.only_first_output(j)?;
            relu = true;
            cur = self.out(j)?;
        }
        Ok((
            vec![LayerSpec::Linear(LinearSpec {
                name,
                out_features,
                relu,
            })],
            cur,
            Act::Flat(out_features),
        ))
    }

    fn gemm(&mut self, i: usize, act: Act) -> Result<(Vec<LayerSpec>, &'a str, Act)> {
        let Act::Flat(nin) = act else {
            return Err(self.err(
                i,
                "reads a map; flatten it first (Flatten or a flattening Reshape)",
            ));
        };
        if self.int(i, "transA", 0)? != 0 {
            return Err(self.err(i, "transA = 1 is not supported"));
        }
        let trans_b = self.int(i, "transB", 0)? != 0;
        let alpha = self.float(i, "alpha", 1.0)?;
        let beta = self.float(i, "beta", 1.0)?;
        let b = self.constant(i, 1, "weight")?.clone();
        let (out_f, w) = weight_rows(&b, trans_b, nin).ok_or_else(|| {
            self.err(
                i,
                format!(
                    "weight of shape {:?} (transB = {}) does not take {nin} inputs",
                    b.dims, trans_b as u8
                ),
            )
        })?;
        let w: Vec<f32> = w.into_iter().map(|x| x * alpha).collect();
        let bias = match self.optional_constant(i, 2, "bias")? {
            Some(c) => bias_values(c, out_f)
                .ok_or_else(|| {
                    self.err(
                        i,
                        format!("bias of shape {:?} does not broadcast to [{out_f}]", c.dims),
                    )
                })?
                .into_iter()
                .map(|x| x * beta)
                .collect(),
            None => vec![0.0; out_f],
        };
        let out = self.out(i)?;
        self.linear_layer(i, nin, w, out_f, bias, out)
    }

    fn matmul(&mut self, i: usize, act: Act) -> Result<(Vec<LayerSpec>, &'a str, Act)> {
        let Act::Flat(nin) = act else {
            return Err(self.err(
                i,
                "reads a map; flatten it first (Flatten or a flattening Reshape)",
            ));
        };
        let b = self.constant(i, 1, "weight")?.clone();
        let (out_f, w) = weight_rows(&b, false, nin).ok_or_else(|| {
            self.err(
                i,
                format!("weight of shape {:?} does not take {nin} inputs", b.dims),
            )
        })?;
        let mut cur = self.out(i)?;
        let mut bias = vec![0.0; out_f];
        if let Some(j) = self
            .sole_user(cur)
            .filter(|j| self.node(*j).op_type == "Add")
        {
            let other = self
                .node(j)
                .input
                .iter()
                .find(|s| s.as_str() != cur)
                .and_then(|s| self.consts.get(s.as_str()));
            if let Some(c) = other {
                bias = bias_values(c, out_f).ok_or_else(|| {
                    self.err(
                        j,
                        format!("bias of shape {:?} does not broadcast to [{out_f}]", c.dims),
                    )
                })?;
                self.visited[j] = true;
                cur = self.out(j)?;
            }
        }
        self.linear_layer(i, nin, w, out_f, bias, cur)
    }
}

fn pooled(len: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    let padded = len.checked_add(p.checked_mul(2)?)?;
    (padded >= k).then(|| (padded - k) / s + 1)
}

fn flatten(act: Act, out: &str) -> (Vec<LayerSpec>, &str, Act) {
    match act {
        Act::Map { .. } => (vec![LayerSpec::Flatten], out, Act::Flat(act.values())),
        Act::Pooled(n) | Act::Flat(n) => (vec![], out, Act::Flat(n)),
    }
}

/// The weight as `[out, in]` rows: `b` is `[out, in]` when `transposed`, else `[in, out]`.
fn weight_rows(b: &Constant, transposed: bool, nin: usize) -> Option<(usize, Vec<f32>)> {
    let [r, c] = b.dims[..] else { return None };
    let v = b.floats();
    if transposed {
        (c == nin).then_some((r, v))
    } else {
        if r != nin {
            return None;
        }
        let mut t = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = v[i * c + j];
            }
        }
        Some((c, t))
    }
}

/// A bias of shape `[n]`, `[1, n]`, `[1]` or `[]` as `n` values.
fn bias_values(c: &Constant, n: usize) -> Option<Vec<f32>> {
    let v = c.floats();
    match (c.dims.as_slice(), v.len()) {
        ([k], _) | ([1, k], _) if *k == n => Some(v),
        ([] | [1] | [1, 1], 1) => Some(vec![v[0]; n]),
        _ => None,
    }
}
