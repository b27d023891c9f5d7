//! Genome layout (design §6.3): gene-layers, kernel groups, decoding and identifier sets.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{GaError, Result};

/// Number of kernel groups (genes) of a gene-layer with `channels` kernels.
///
/// 10 groups below 256 kernels, 100 from 256 on, never more groups than kernels.
pub fn group_count(channels: usize) -> usize {
    let groups = if channels < 256 { 10 } else { 100 };
    groups.min(channels)
}

/// Sizes of the `groups` contiguous parts `n` items are split into, the way numpy's
/// `array_split` does: the first `n mod groups` parts get one extra item.
///
/// `groups == 0` yields no parts.
pub fn array_split_sizes(n: usize, groups: usize) -> Vec<usize> {
    if groups == 0 {
        return Vec::new();
    }
    let base = n / groups;
    let extra = n % groups;
    (0..groups).map(|g| base + usize::from(g < extra)).collect()
}

/// One gene-layer: a mask site whose kernels are split into groups, one gene per group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneLayer {
    /// Physical conv indices that share this gene-layer's mask (two for coupled ResCNN convs).
    pub convs: Vec<usize>,
    /// Kernels (output channels) of each of those convs.
    pub channels: usize,
    /// Number of kernel groups, i.e. genes of this layer.
    pub groups: usize,
}

impl GeneLayer {
    /// A gene-layer over `convs` with `channels` kernels and [`group_count`] groups.
    pub fn new(convs: Vec<usize>, channels: usize) -> Self {
        Self {
            convs,
            channels,
            groups: group_count(channels),
        }
    }

    /// Sizes of the layer's kernel groups ([`array_split_sizes`]).
    pub fn group_sizes(&self) -> Vec<usize> {
        array_split_sizes(self.channels, self.groups)
    }
}

/// Scales a width-1 channel count: `max(1, round(width · channels))` (design §3.4).
fn scale_channels(channels: usize, width: f64) -> usize {
    ((channels as f64 * width).round() as usize).max(1)
}

/// Gene-layers of SimCNN(-CS) at `width` (1.0 = the paper's widths): 13 single-conv layers.
pub fn simcnn_gene_layers(width: f64) -> Vec<GeneLayer> {
    const CHANNELS: [usize; 13] = [
        64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512,
    ];
    CHANNELS
        .iter()
        .enumerate()
        .map(|(conv, &c)| GeneLayer::new(vec![conv], scale_channels(c, width)))
        .collect()
}

/// Gene-layers of ResCNN(-CS) at `width`, in the spec's order: conv0, conv2, conv1&3, conv4,
/// conv6, conv5&7, conv8, conv10, conv9&11.
pub fn rescnn_gene_layers(width: f64) -> Vec<GeneLayer> {
    let layers: [(&[usize], usize); 9] = [
        (&[0], 64),
        (&[2], 128),
        (&[1, 3], 128),
        (&[4], 256),
        (&[6], 512),
        (&[5, 7], 512),
        (&[8], 512),
        (&[10], 512),
        (&[9, 11], 512),
    ];
    layers
        .iter()
        .map(|(convs, c)| GeneLayer::new(convs.to_vec(), scale_channels(*c, width)))
        .collect()
}

/// The layout of a chromosome: which genes belong to which gene-layer and which kernels each
/// gene stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genome {
    layers: Vec<GeneLayer>,
    /// Group sizes per gene-layer.
    group_sizes: Vec<Vec<usize>>,
    /// First gene of each gene-layer, plus the total at the end.
    gene_offsets: Vec<usize>,
    /// Kernels of each physical conv, by conv index.
    conv_channels: Vec<usize>,
    /// Identifier of kernel 0 of each physical conv, plus the total at the end.
    conv_offsets: Vec<usize>,
}

impl Genome {
    /// Builds the layout; the gene-layers' convs must cover 0..n exactly once, every layer
    /// needs at least one kernel and `1 ≤ groups ≤ channels`.
    pub fn new(layers: Vec<GeneLayer>) -> Result<Self> {
        if layers.is_empty() {
            return Err(GaError::ConvCoverage {
                expected: 0,
                reason: "no gene-layers given".into(),
            });
        }
        for (i, layer) in layers.iter().enumerate() {
            let reason = if layer.convs.is_empty() {
                Some("no physical conv listed".to_string())
            } else if layer.channels == 0 {
                Some("zero channels".to_string())
            } else if layer.groups == 0 || layer.groups > layer.channels {
                Some(format!(
                    "{} groups for {} channels (need 1..=channels)",
                    layer.groups, layer.channels
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(GaError::InvalidGeneLayer { layer: i, reason });
            }
        }
        let conv_count = layers
            .iter()
            .flat_map(|l| l.convs.iter())
            .max()
            .map_or(0, |&m| m + 1);
        let mut conv_channels = vec![None; conv_count];
        for layer in &layers {
            for &conv in &layer.convs {
                if conv_channels[conv].is_some() {
                    return Err(GaError::ConvCoverage {
                        expected: conv_count,
                        reason: format!("conv {conv} appears in more than one place"),
                    });
                }
                conv_channels[conv] = Some(layer.channels);
            }
        }
        let conv_channels: Vec<usize> = conv_channels
            .iter()
            .enumerate()
            .map(|(conv, c)| {
                c.ok_or_else(|| GaError::ConvCoverage {
                    expected: conv_count,
                    reason: format!("conv {conv} is in no gene-layer"),
                })
            })
            .collect::<Result<_>>()?;
        let mut conv_offsets = Vec::with_capacity(conv_count + 1);
        let mut total = 0usize;
        for &c in &conv_channels {
            conv_offsets.push(total);
            total += c;
        }
        conv_offsets.push(total);
        if total > u32::MAX as usize {
            return Err(GaError::ConvCoverage {
                expected: conv_count,
                reason: format!("{total} kernels do not fit 32-bit identifiers"),
            });
        }
        let group_sizes: Vec<Vec<usize>> = layers.iter().map(GeneLayer::group_sizes).collect();
        let mut gene_offsets = Vec::with_capacity(layers.len() + 1);
        let mut genes = 0usize;
        for layer in &layers {
            gene_offsets.push(genes);
            genes += layer.groups;
        }
        gene_offsets.push(genes);
        Ok(Self {
            layers,
            group_sizes,
            gene_offsets,
            conv_channels,
            conv_offsets,
        })
    }

    /// The gene-layers, in gene order.
    pub fn layers(&self) -> &[GeneLayer] {
        &self.layers
    }

    /// Total number of genes (SimCNN: 940, ResCNN: 630 at width 1).
    pub fn gene_count(&self) -> usize {
        *self.gene_offsets.last().unwrap_or(&0)
    }

    /// Number of physical convs.
    pub fn conv_count(&self) -> usize {
        self.conv_channels.len()
    }

    /// Kernels of physical conv `conv`.
    pub fn conv_channels(&self, conv: usize) -> usize {
        self.conv_channels[conv]
    }

    /// Total kernels over all physical convs (K_tot); also the identifier universe size.
    pub fn kernel_total(&self) -> usize {
        *self.conv_offsets.last().unwrap_or(&0)
    }

    /// Gene positions of gene-layer `layer`.
    pub fn gene_range(&self, layer: usize) -> Range<usize> {
        self.gene_offsets[layer]..self.gene_offsets[layer + 1]
    }

    /// Group sizes of gene-layer `layer`.
    pub fn group_sizes(&self, layer: usize) -> &[usize] {
        &self.group_sizes[layer]
    }

    /// The chromosome that keeps every group.
    pub fn all_ones(&self) -> Vec<u8> {
        vec![1; self.gene_count()]
    }

    /// Checks length and gene values of a chromosome.
    pub fn check_chromosome(&self, chromosome: &[u8]) -> Result<()> {
        if chromosome.len() != self.gene_count() {
            return Err(GaError::ChromosomeLength {
                expected: self.gene_count(),
                found: chromosome.len(),
            });
        }
        if let Some((position, &value)) = chromosome.iter().enumerate().find(|(_, &g)| g > 1) {
            return Err(GaError::GeneValue { position, value });
        }
        Ok(())
    }

    /// Checks that `orders` holds one permutation of `0..channels` per gene-layer.
    pub fn check_importance_orders(&self, orders: &[Vec<usize>]) -> Result<()> {
        if orders.len() != self.layers.len() {
            return Err(GaError::Count {
                what: "importance orders (one per gene-layer)",
                expected: self.layers.len(),
                found: orders.len(),
            });
        }
        for (layer, (order, gl)) in orders.iter().zip(&self.layers).enumerate() {
            let err = |reason: String| GaError::ImportanceOrder {
                layer,
                channels: gl.channels,
                reason,
            };
            if order.len() != gl.channels {
                return Err(err(format!("{} entries", order.len())));
            }
            let mut seen = vec![false; gl.channels];
            for &k in order {
                if k >= gl.channels {
                    return Err(err(format!("kernel {k} out of range")));
                }
                if std::mem::replace(&mut seen[k], true) {
                    return Err(err(format!("kernel {k} listed twice")));
                }
            }
        }
        Ok(())
    }

    /// The identity importance order of every gene-layer (the "random" ablation of design §6.1).
    pub fn identity_orders(&self) -> Vec<Vec<usize>> {
        self.layers
            .iter()
            .map(|l| (0..l.channels).collect())
            .collect()
    }

    /// Retained kernel indices per gene-layer: the union of the kept groups, mapped back
    /// through the class-specific importance order (`orders[layer][rank]` = kernel index of
    /// the `rank`-th most important kernel), sorted ascending.
    pub fn decode(&self, chromosome: &[u8], orders: &[Vec<usize>]) -> Result<Vec<Vec<usize>>> {
        self.check_chromosome(chromosome)?;
        self.check_importance_orders(orders)?;
        Ok(self
            .layers
            .iter()
            .enumerate()
            .map(|(layer, _)| {
                let genes = &chromosome[self.gene_range(layer)];
                let mut start = 0usize;
                let mut kept = Vec::new();
                for (&gene, &size) in genes.iter().zip(&self.group_sizes[layer]) {
                    if gene == 1 {
                        kept.extend_from_slice(&orders[layer][start..start + size]);
                    }
                    start += size;
                }
                kept.sort_unstable();
                kept
            })
            .collect())
    }

    /// Expands per-gene-layer retained sets to per-physical-conv sets (coupled convs get the
    /// same set), indexed by conv.
    pub fn retained_per_conv(&self, retained: &[Vec<usize>]) -> Result<Vec<Vec<usize>>> {
        self.check_retained(retained)?;
        let mut per_conv = vec![Vec::new(); self.conv_count()];
        for (layer, set) in self.layers.iter().zip(retained) {
            for &conv in &layer.convs {
                per_conv[conv] = set.clone();
            }
        }
        Ok(per_conv)
    }

    /// Retained kernels of a chromosome, counted once per physical conv: Σ over gene-layers of
    /// (kept group sizes) × (convs sharing the layer).
    pub fn kept_kernel_count(&self, chromosome: &[u8]) -> Result<usize> {
        self.check_chromosome(chromosome)?;
        Ok(self
            .layers
            .iter()
            .enumerate()
            .map(|(layer, gl)| {
                let kept: usize = chromosome[self.gene_range(layer)]
                    .iter()
                    .zip(&self.group_sizes[layer])
                    .filter(|(&g, _)| g == 1)
                    .map(|(_, &s)| s)
                    .sum();
                kept * gl.convs.len()
            })
            .sum())
    }

    /// Identifier of kernel `kernel` of physical conv `conv`: kernels are numbered
    /// consecutively conv after conv, in conv index order.
    pub fn identifier(&self, conv: usize, kernel: usize) -> u32 {
        (self.conv_offsets[conv] + kernel) as u32
    }

    /// Sorted identifier set {(conv, kernel)} of retained sets given per gene-layer (as from
    /// [`Genome::decode`]), over every physical conv; feeds the diversity term.
    pub fn identifier_set(&self, retained: &[Vec<usize>]) -> Result<Vec<u32>> {
        self.check_retained(retained)?;
        let mut ids = Vec::new();
        for (layer, set) in self.layers.iter().zip(retained) {
            for &conv in &layer.convs {
                ids.extend(set.iter().map(|&k| self.identifier(conv, k)));
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// [`Genome::decode`] followed by [`Genome::identifier_set`].
    pub fn chromosome_identifier_set(
        &self,
        chromosome: &[u8],
        orders: &[Vec<usize>],
    ) -> Result<Vec<u32>> {
        let retained = self.decode(chromosome, orders)?;
        self.identifier_set(&retained)
    }

    fn check_retained(&self, retained: &[Vec<usize>]) -> Result<()> {
        if retained.len() != self.layers.len() {
            return Err(GaError::Count {
                what: "retained sets (one per gene-layer)",
                expected: self.layers.len(),
                found: retained.len(),
            });
        }
        for (layer, (set, gl)) in retained.iter().zip(&self.layers).enumerate() {
            if let Some(&k) = set.iter().find(|&&k| k >= gl.channels) {
                return Err(GaError::InvalidGeneLayer {
                    layer,
                    reason: format!("retained kernel {k} ≥ {} channels", gl.channels),
                });
            }
        }
        Ok(())
    }
}
