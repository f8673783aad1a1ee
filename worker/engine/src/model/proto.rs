//! A minimal reader of the protobuf wire format for the parts of `onnx.proto` a
//! riskpipe model uses (model, graph, node, attribute, tensor, value info).
//!
//! Hand-written rather than generated: the messages are few and small, and it
//! keeps the engine free of a protobuf toolchain. Unknown fields are skipped, as
//! protobuf readers do, so newer ONNX files still load.

/// A decoding error with the message that was being read.
pub type ProtoResult<T> = Result<T, String>;

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> ProtoResult<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or("truncated varint (the file is cut short or not ONNX)")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes (not an ONNX file)".to_owned())
    }

    fn take(&mut self, n: usize) -> ProtoResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("field runs past the end (the file is cut short or not ONNX)")?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn next(&mut self) -> ProtoResult<Option<(u64, Wire<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Wire::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Wire::Fixed32(u32::from_le_bytes(a))
            }
            other => return Err(format!("unsupported wire type {other} (not an ONNX file)")),
        };
        Ok(Some((field, wire)))
    }
}

fn string(b: &[u8]) -> ProtoResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a name is not UTF-8".to_owned())
}

fn push_floats(w: Wire<'_>, out: &mut Vec<f32>) -> ProtoResult<()> {
    match w {
        Wire::Fixed32(v) => out.push(f32::from_bits(v)),
        Wire::Bytes(b) => {
            if !b.len().is_multiple_of(4) {
                return Err("packed floats of a length not a multiple of 4".to_owned());
            }
            out.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        _ => return Err("floats of the wrong wire type".to_owned()),
    }
    Ok(())
}

fn push_doubles(w: Wire<'_>, out: &mut Vec<f64>) -> ProtoResult<()> {
    match w {
        Wire::Fixed64(v) => out.push(f64::from_bits(v)),
        Wire::Bytes(b) => {
            if !b.len().is_multiple_of(8) {
                return Err("packed doubles of a length not a multiple of 8".to_owned());
            }
            out.extend(b.chunks_exact(8).map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_le_bytes(a)
            }));
        }
        _ => return Err("doubles of the wrong wire type".to_owned()),
    }
    Ok(())
}

fn push_varints(w: Wire<'_>, out: &mut Vec<i64>) -> ProtoResult<()> {
    match w {
        Wire::Varint(v) => out.push(v as i64),
        Wire::Bytes(b) => {
            let mut r = Reader::new(b);
            while r.pos < b.len() {
                out.push(r.varint()? as i64);
            }
        }
        _ => return Err("integers of the wrong wire type".to_owned()),
    }
    Ok(())
}

fn bytes<'a>(w: Wire<'a>, what: &str) -> ProtoResult<&'a [u8]> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(format!("{what} of the wrong wire type")),
    }
}

fn varint(w: Wire<'_>, what: &str) -> ProtoResult<i64> {
    match w {
        Wire::Varint(v) => Ok(v as i64),
        _ => Err(format!("{what} of the wrong wire type")),
    }
}

/// `ModelProto`, the parts riskpipe reads.
#[derive(Debug, Clone, Default)]
pub struct ModelProto {
    /// The producer (e.g. `skl2onnx`).
    pub producer_name: String,
    /// `model_version`.
    pub model_version: i64,
    /// The graph.
    pub graph: GraphProto,
    /// `metadata_props` as (key, value).
    pub metadata: Vec<(String, String)>,
}

/// `GraphProto`.
#[derive(Debug, Clone, Default)]
pub struct GraphProto {
    /// The graph's name.
    pub name: String,
    /// Nodes in topological order (as ONNX requires).
    pub nodes: Vec<NodeProto>,
    /// Constant tensors.
    pub initializers: Vec<TensorProto>,
    /// Graph inputs (may include initializers in old files).
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
}

/// `NodeProto`.
#[derive(Debug, Clone, Default)]
pub struct NodeProto {
    /// Input value names.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// The node's name.
    pub name: String,
    /// The operator.
    pub op_type: String,
    /// The operator's domain (`""` or `ai.onnx.ml`).
    pub domain: String,
    /// Attributes.
    pub attributes: Vec<AttributeProto>,
}

/// `AttributeProto`, every value kind riskpipe's operators use.
#[derive(Debug, Clone, Default)]
pub struct AttributeProto {
    /// The attribute's name.
    pub name: String,
    /// `f`.
    pub f: f32,
    /// `i`.
    pub i: i64,
    /// `s`.
    pub s: Vec<u8>,
    /// `t`.
    pub t: Option<TensorProto>,
    /// `floats`.
    pub floats: Vec<f32>,
    /// `ints`.
    pub ints: Vec<i64>,
    /// `strings`.
    pub strings: Vec<Vec<u8>>,
}

/// `TensorProto` with its numbers widened to f64 (floats, doubles and integers).
#[derive(Debug, Clone, Default)]
pub struct TensorProto {
    /// The tensor's name.
    pub name: String,
    /// Dimensions.
    pub dims: Vec<i64>,
    /// The ONNX element type (1 = float, 6 = int32, 7 = int64, 11 = double).
    pub data_type: i32,
    /// The values.
    pub values: Vec<f64>,
}

/// `ValueInfoProto` of a tensor: name, element type and shape (`None` for a
/// symbolic dimension).
#[derive(Debug, Clone, Default)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// The element type (0 when not a tensor).
    pub elem_type: i32,
    /// The shape.
    pub dims: Vec<Option<i64>>,
}

/// Decodes a model file.
pub fn decode_model(buf: &[u8]) -> ProtoResult<ModelProto> {
    let mut m = ModelProto::default();
    let mut r = Reader::new(buf);
    let mut saw_graph = false;
    while let Some((field, w)) = r.next()? {
        match field {
            2 => m.producer_name = string(bytes(w, "producer_name")?)?,
            5 => m.model_version = varint(w, "model_version")?,
            7 => {
                m.graph = decode_graph(bytes(w, "graph")?)?;
                saw_graph = true;
            }
            14 => {
                let mut e = Reader::new(bytes(w, "metadata_props")?);
                let (mut k, mut v) = (String::new(), String::new());
                while let Some((f, w)) = e.next()? {
                    match f {
                        1 => k = string(bytes(w, "metadata key")?)?,
                        2 => v = string(bytes(w, "metadata value")?)?,
                        _ => {}
                    }
                }
                m.metadata.push((k, v));
            }
            _ => {}
        }
    }
    if !saw_graph {
        return Err("no graph in the file (not an ONNX model)".to_owned());
    }
    Ok(m)
}

fn decode_graph(buf: &[u8]) -> ProtoResult<GraphProto> {
    let mut g = GraphProto::default();
    let mut r = Reader::new(buf);
    while let Some((field, w)) = r.next()? {
        match field {
            1 => g.nodes.push(decode_node(bytes(w, "node")?)?),
            2 => g.name = string(bytes(w, "graph name")?)?,
            5 => g
                .initializers
                .push(decode_tensor(bytes(w, "initializer")?)?),
            11 => g.inputs.push(decode_value_info(bytes(w, "input")?)?),
            12 => g.outputs.push(decode_value_info(bytes(w, "output")?)?),
            _ => {}
        }
    }
    Ok(g)
}

fn decode_node(buf: &[u8]) -> ProtoResult<NodeProto> {
    let mut n = NodeProto::default();
    let mut r = Reader::new(buf);
    while let Some((field, w)) = r.next()? {
        match field {
            1 => n.inputs.push(string(bytes(w, "node input")?)?),
            2 => n.outputs.push(string(bytes(w, "node output")?)?),
            3 => n.name = string(bytes(w, "node name")?)?,
            4 => n.op_type = string(bytes(w, "op_type")?)?,
            5 => n.attributes.push(decode_attribute(bytes(w, "attribute")?)?),
            7 => n.domain = string(bytes(w, "domain")?)?,
            _ => {}
        }
    }
    Ok(n)
}

fn decode_attribute(buf: &[u8]) -> ProtoResult<AttributeProto> {
    let mut a = AttributeProto::default();
    let mut r = Reader::new(buf);
    while let Some((field, w)) = r.next()? {
        match field {
            1 => a.name = string(bytes(w, "attribute name")?)?,
            2 => match w {
                Wire::Fixed32(v) => a.f = f32::from_bits(v),
                _ => return Err("attribute f of the wrong wire type".to_owned()),
            },
            3 => a.i = varint(w, "attribute i")?,
            4 => a.s = bytes(w, "attribute s")?.to_vec(),
            5 => a.t = Some(decode_tensor(bytes(w, "attribute t")?)?),
            7 => push_floats(w, &mut a.floats)?,
            8 => push_varints(w, &mut a.ints)?,
            9 => a.strings.push(bytes(w, "attribute strings")?.to_vec()),
            _ => {}
        }
    }
    Ok(a)
}

fn decode_tensor(buf: &[u8]) -> ProtoResult<TensorProto> {
    let mut t = TensorProto::default();
    let mut r = Reader::new(buf);
    let mut floats = Vec::new();
    let mut doubles = Vec::new();
    let mut ints = Vec::new();
    let mut raw: &[u8] = &[];
    while let Some((field, w)) = r.next()? {
        match field {
            1 => push_varints(w, &mut t.dims)?,
            2 => t.data_type = varint(w, "data_type")? as i32,
            4 => push_floats(w, &mut floats)?,
            5 | 7 => push_varints(w, &mut ints)?,
            8 => t.name = string(bytes(w, "tensor name")?)?,
            9 => raw = bytes(w, "raw_data")?,
            10 => push_doubles(w, &mut doubles)?,
            _ => {}
        }
    }
    t.values = match t.data_type {
        1 if !raw.is_empty() => {
            let mut v = Vec::new();
            push_floats(Wire::Bytes(raw), &mut v)?;
            v.into_iter().map(f64::from).collect()
        }
        1 => floats.into_iter().map(f64::from).collect(),
        11 if !raw.is_empty() => {
            let mut v = Vec::new();
            push_doubles(Wire::Bytes(raw), &mut v)?;
            v
        }
        11 => doubles,
        6 | 7 if !raw.is_empty() => {
            let width = if t.data_type == 7 { 8 } else { 4 };
            if !raw.len().is_multiple_of(width) {
                return Err(format!("tensor '{}': raw data of a bad length", t.name));
            }
            raw.chunks_exact(width)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a[..width].copy_from_slice(c);
                    if width == 4 {
                        f64::from(i32::from_le_bytes([a[0], a[1], a[2], a[3]]))
                    } else {
                        i64::from_le_bytes(a) as f64
                    }
                })
                .collect()
        }
        6 | 7 => ints.into_iter().map(|i| i as f64).collect(),
        other => {
            return Err(format!(
                "tensor '{}' has element type {other}; riskpipe reads float, double, int32 and int64 tensors",
                t.name
            ));
        }
    };
    Ok(t)
}

fn decode_value_info(buf: &[u8]) -> ProtoResult<ValueInfo> {
    let mut v = ValueInfo::default();
    let mut r = Reader::new(buf);
    while let Some((field, w)) = r.next()? {
        match field {
            1 => v.name = string(bytes(w, "value name")?)?,
            2 => {
                // TypeProto.tensor_type = 1
                let mut tr = Reader::new(bytes(w, "type")?);
                while let Some((f, w)) = tr.next()? {
                    if f != 1 {
                        continue;
                    }
                    let mut tt = Reader::new(bytes(w, "tensor type")?);
                    while let Some((f, w)) = tt.next()? {
                        match f {
                            1 => v.elem_type = varint(w, "elem_type")? as i32,
                            2 => {
                                let mut sr = Reader::new(bytes(w, "shape")?);
                                while let Some((f, w)) = sr.next()? {
                                    if f != 1 {
                                        continue;
                                    }
                                    let mut dr = Reader::new(bytes(w, "dimension")?);
                                    let mut dim = None;
                                    while let Some((f, w)) = dr.next()? {
                                        if f == 1 {
                                            dim = Some(varint(w, "dim_value")?);
                                        }
                                    }
                                    v.dims.push(dim);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(v)
}
