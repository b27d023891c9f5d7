//! In-memory labelled image sets.

use serde::{Deserialize, Serialize};

use crate::DataError;

/// Channels × height × width of stored images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    /// Number of colour channels (1 = grey, 3 = RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

impl ImageShape {
    /// Number of bytes of one image (`channels · height · width`).
    pub fn pixels(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// A labelled set of u8 images, stored NCHW contiguous (channel-major per image, RGB order).
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// Human-readable name, e.g. `fashion-mnist/train`.
    pub name: String,
    /// Shape of every image.
    pub shape: ImageShape,
    /// `len() · shape.pixels()` bytes, image after image, each channel-major.
    pub images: Vec<u8>,
    /// One label per image, each `< class_names.len()`.
    pub labels: Vec<u16>,
    /// Class names in label order.
    pub class_names: Vec<String>,
}

impl ImageSet {
    /// Builds a set after checking that the buffer size matches the label count and that
    /// every label names a class.
    pub fn new(
        name: impl Into<String>,
        shape: ImageShape,
        images: Vec<u8>,
        labels: Vec<u16>,
        class_names: Vec<String>,
    ) -> Result<Self, DataError> {
        let name = name.into();
        let expected = labels.len().checked_mul(shape.pixels());
        if expected != Some(images.len()) {
            return Err(DataError::InvalidArgument(format!(
                "image set {name}: {} bytes of pixels for {} images of shape {}x{}x{}",
                images.len(),
                labels.len(),
                shape.channels,
                shape.height,
                shape.width
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= class_names.len())
        {
            return Err(DataError::InvalidArgument(format!(
                "image set {name}: label {l} of image {i} is not below the number of classes {}",
                class_names.len()
            )));
        }
        Ok(ImageSet {
            name,
            shape,
            images,
            labels,
            class_names,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes (`class_names.len()`).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Pixels of image `i` (channel-major).
    ///
    /// # Panics
    /// If `i >= self.len()`; see [`ImageSet::get_image`] for a checked version.
    pub fn image(&self, i: usize) -> &[u8] {
        let p = self.shape.pixels();
        &self.images[i * p..(i + 1) * p]
    }

    /// Pixels of image `i`, or `None` when `i` is out of range.
    pub fn get_image(&self, i: usize) -> Option<&[u8]> {
        let p = self.shape.pixels();
        let start = i.checked_mul(p)?;
        self.images.get(start..start.checked_add(p)?)
    }

    /// A new set holding the images at `indices`, in the order given (repeats allowed).
    ///
    /// # Panics
    /// If an index is out of range; see [`ImageSet::try_subset`] for a checked version.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        match self.try_subset(indices) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`ImageSet::subset`] but returns an error for an out-of-range index.
    pub fn try_subset(&self, indices: &[usize]) -> Result<ImageSet, DataError> {
        let p = self.shape.pixels();
        let mut images = Vec::with_capacity(indices.len() * p);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let img = self.get_image(i).ok_or_else(|| {
                DataError::InvalidArgument(format!(
                    "image set {}: index {i} out of range (len {})",
                    self.name,
                    self.len()
                ))
            })?;
            images.extend_from_slice(img);
            labels.push(self.labels[i]);
        }
        Ok(ImageSet {
            name: self.name.clone(),
            shape: self.shape,
            images,
            labels,
            class_names: self.class_names.clone(),
        })
    }

    /// Keeps the images of the listed classes (in file order) and relabels each to the
    /// position of its class in `classes`; `class_names` follow the list. A class listed
    /// twice takes the position of its first occurrence.
    ///
    /// # Panics
    /// If a listed class is `>= num_classes()`; see [`ImageSet::try_filter_classes`].
    pub fn filter_classes(&self, classes: &[usize]) -> ImageSet {
        match self.try_filter_classes(classes) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`ImageSet::filter_classes`] but returns an error for an unknown class.
    pub fn try_filter_classes(&self, classes: &[usize]) -> Result<ImageSet, DataError> {
        let mut new_label = vec![None; self.num_classes()];
        for (pos, &c) in classes.iter().enumerate() {
            let slot = new_label.get_mut(c).ok_or_else(|| {
                DataError::InvalidArgument(format!(
                    "image set {}: class {c} out of range ({} classes)",
                    self.name,
                    self.num_classes()
                ))
            })?;
            if slot.is_none() {
                *slot = Some(u16::try_from(pos).map_err(|_| {
                    DataError::InvalidArgument(format!(
                        "too many classes listed ({})",
                        classes.len()
                    ))
                })?);
            }
        }
        let p = self.shape.pixels();
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for (i, &l) in self.labels.iter().enumerate() {
            if let Some(Some(nl)) = new_label.get(usize::from(l)) {
                images.extend_from_slice(&self.images[i * p..(i + 1) * p]);
                labels.push(*nl);
            }
        }
        Ok(ImageSet {
            name: self.name.clone(),
            shape: self.shape,
            images,
            labels,
            class_names: classes
                .iter()
                .map(|&c| self.class_names[c].clone())
                .collect(),
        })
    }

    /// Number of images of each class (length `num_classes()`).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(usize::from(l)) {
                *c += 1;
            }
        }
        counts
    }

    /// Ascending indices of the images of class `class`.
    pub fn indices_of_class(&self, class: usize) -> Vec<usize> {
        self.labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| usize::from(l) == class)
            .map(|(i, _)| i)
            .collect()
    }
}

/// The official training and test splits of a dataset.
#[derive(Clone, Debug)]
pub struct DatasetSplits {
    /// Training split.
    pub train: ImageSet,
    /// Test split.
    pub test: ImageSet,
}
