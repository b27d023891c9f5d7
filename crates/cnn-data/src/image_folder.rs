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
    struct Decoded {
        path: PathBuf,
        img: image::DynamicImage,
        label: u16,
    }
    let mut decoded = Vec::new();
    let mut size = expect_size;
    let mut colour = false;
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
            let img = image::ImageReader::open(&path)
                .map_err(|e| DataError::io(&path, e))?
                .with_guessed_format()
                .map_err(|e| DataError::io(&path, e))?
                .decode()
                .map_err(|e| DataError::format(&path, format!("cannot decode image: {e}")))?;
            let dims = (img.height() as usize, img.width() as usize);
            match size {
                None => size = Some(dims),
                Some(s) if s != dims => {
                    return Err(DataError::format(
                        &path,
                        format!(
                            "image is {}x{} (width x height) but earlier images are {}x{}; \
                             all images must have one size",
                            dims.1, dims.0, s.1, s.0
                        ),
                    ))
                }
                Some(_) => {}
            }
            colour |= img.color().has_color();
            decoded.push(Decoded { path, img, label });
        }
    }
    let Some((height, width)) = size else {
        return Err(DataError::format(
            root,
            "no png/jpg images found in the class folders",
        ));
    };
    let channels = if colour { 3 } else { 1 };
    let plane = height * width;
    let mut images = Vec::with_capacity(decoded.len() * plane * channels);
    let mut labels = Vec::with_capacity(decoded.len());
    for d in decoded {
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
