//! Image folders: `root/<class name>/*.png|jpg|jpeg`, classes in sorted order of folder name.

use std::path::{Path, PathBuf};

use crate::{DataError, ImageSet, ImageShape};

/// Whether `path` has an extension this reader decodes (png, jpg, jpeg; any case).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        .unwrap_or(false)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

/// Sorted names of the class folders (non-hidden subfolders) of `root`.
pub fn class_folders(root: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for p in sorted_entries(root)? {
        if p.is_dir() {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| DataError::format(&p, "class folder name is not valid UTF-8"))?;
            names.push(name.to_string());
        }
    }
    if names.is_empty() {
        return Err(DataError::format(root, "no class folders found"));
    }
    Ok(names)
}

/// Largest width or height of an image the loader decodes; larger headers are rejected before
/// any pixel buffer is allocated.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Largest allocation, in bytes, the decoder may make for one image.
pub const MAX_IMAGE_ALLOC: u64 = 256 << 20;

/// Reads the images under `root/<class>/` for each name of `class_names` (label = position
/// in the list; a missing class folder simply contributes no image). Images must all have
/// the same width and height (`expect_size` when given); grey images stay one channel unless
/// any image is colour, in which case all become RGB. Alpha is dropped.
pub fn read_image_folder(
    root: &Path,
    class_names: &[String],
    name: &str,
    expect_size: Option<(usize, usize)>,
) -> Result<ImageSet, DataError> {
    let mut images = DecodedImages::new(expect_size);
    for (label, class) in class_names.iter().enumerate() {
        let dir = root.join(class);
        if !dir.is_dir() {
            continue;
        }
        let label = u16::try_from(label)
            .map_err(|_| DataError::format(root, "more than 65,536 classes"))?;
        for path in sorted_entries(&dir)? {
            if !path.is_file() || !is_image_file(&path) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
            images.add_encoded(&path, &bytes, label)?;
        }
    }
    images.into_image_set(root, name, class_names)
}

struct Decoded {
    path: PathBuf,
    img: image::DynamicImage,
    label: u16,
}

/// The decoding half of [`read_image_folder`]: encoded png/jpg images go in one at a time
/// (with the path they came from, for error messages, and their label), an [`ImageSet`]
/// comes out, with the same checks and conversions as the folder reader.
pub struct DecodedImages {
    decoded: Vec<Decoded>,
    size: Option<(usize, usize)>,
    colour: bool,
}

impl DecodedImages {
    /// An empty collection; every image must be `expect_size` (height, width) when given,
    /// else the size of the first image.
    pub fn new(expect_size: Option<(usize, usize)>) -> Self {
        DecodedImages {
            decoded: Vec::new(),
            size: expect_size,
            colour: false,
        }
    }

    /// Decodes one image file's bytes (format guessed from the content, else from the
    /// extension of `path`) and keeps it under `label`. Images wider or taller than
    /// [`MAX_IMAGE_SIDE`] are rejected.
    pub fn add_encoded(&mut self, path: &Path, bytes: &[u8], label: u16) -> Result<(), DataError> {
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
        if let Ok(format) = image::ImageFormat::from_path(path) {
            reader.set_format(format);
        }
        let mut reader = reader
            .with_guessed_format()
            .map_err(|e| DataError::io(path, e))?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_IMAGE_SIDE);
        limits.max_image_height = Some(MAX_IMAGE_SIDE);
        limits.max_alloc = Some(MAX_IMAGE_ALLOC);
        reader.limits(limits);
        let img = reader
            .decode()
            .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?;
        let dims = (img.height() as usize, img.width() as usize);
        if dims.0 == 0 || dims.1 == 0 {
            return Err(DataError::format(
                path,
                format!("image is {}x{} (width x height): empty", dims.1, dims.0),
            ));
        }
        match self.size {
            None => self.size = Some(dims),
            Some(s) if s != dims => {
                return Err(DataError::format(
                    path,
                    format!(
                        "image is {}x{} (width x height) but earlier images are {}x{}; \
                         all images must have one size",
                        dims.1, dims.0, s.1, s.0
                    ),
                ))
            }
            Some(_) => {}
        }
        self.colour |= img.color().has_color();
        self.decoded.push(Decoded {
            path: path.to_path_buf(),
            img,
            label,
        });
        Ok(())
    }

    /// The images kept so far as a set (RGB when any image is colour, else grey); `root`
    /// names the folder in errors. Fails when no image was added or a label is not below
    /// `class_names.len()`.
    pub fn into_image_set(
        self,
        root: &Path,
        name: &str,
        class_names: &[String],
    ) -> Result<ImageSet, DataError> {
        let Some((height, width)) = self.size.filter(|_| !self.decoded.is_empty()) else {
            return Err(DataError::format(
                root,
                "no png/jpg images found in the class folders",
            ));
        };
        let colour = self.colour;
        let channels = if colour { 3 } else { 1 };
        let plane = height * width;
        let mut images = Vec::with_capacity(self.decoded.len() * plane * channels);
        let mut labels = Vec::with_capacity(self.decoded.len());
        for d in self.decoded {
            if usize::from(d.label) >= class_names.len() {
                return Err(DataError::format(
                    &d.path,
                    format!(
                        "label {} is out of range ({} classes)",
                        d.label,
                        class_names.len()
                    ),
                ));
            }
            if colour {
                let rgb = d.img.to_rgb8();
                let raw = rgb.as_raw();
                for ch in 0..3 {
                    images.extend(raw.iter().skip(ch).step_by(3));
                }
            } else {
                images.extend_from_slice(d.img.to_luma8().as_raw());
            }
            if images.len() != (labels.len() + 1) * plane * channels {
                return Err(DataError::format(
                    &d.path,
                    "decoded pixel count does not match the image size",
                ));
            }
            labels.push(d.label);
        }
        Ok(ImageSet {
            name: name.to_string(),
            shape: ImageShape {
                channels,
                height,
                width,
            },
            images,
            labels,
            class_names: class_names.to_vec(),
        })
    }
}
