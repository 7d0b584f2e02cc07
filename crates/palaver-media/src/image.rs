//! Images: decoded under limits, turned upright, re-encoded without their
//! metadata, and shrunk into a thumbnail. Everything here is CPU work and
//! runs on the blocking pool (see `MediaService`).
//!
//! - **Decompression bombs.** The pixel count is read from the header and
//!   checked before anything is decoded; the decoder also gets `image`'s
//!   allocation limit, so a lying header cannot allocate past it either.
//! - **Metadata.** JPEG, PNG and WebP are decoded to pixels and encoded
//!   again, so nothing but pixels survives: EXIF (GPS position, camera
//!   serial), XMP, comments, text chunks. The EXIF orientation is applied to
//!   the pixels first, so the picture stays upright without it. JPEG stays
//!   JPEG (quality 90); PNG stays PNG (lossless); WebP becomes PNG when it
//!   has transparency and JPEG otherwise (`image` encodes WebP only
//!   losslessly, which would inflate photos).
//! - **GIF** keeps its animation: frames are copied still LZW-compressed,
//!   with their palettes and timing, into a new file, which drops comment,
//!   XMP and other extension blocks without re-quantising colours.
//! - **Thumbnails** are JPEG, at most `thumbnail_size` on the longer side
//!   (transparency over white).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ImageDecoder as _, ImageFormat, ImageReader, Limits};

/// Why an image was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// More pixels than allowed (a decompression bomb, or just too big).
    #[error("the image is {width}x{height} pixels; at most {max} pixels are accepted")]
    TooManyPixels {
        /// Declared width.
        width: u64,
        /// Declared height (for animations: summed over frames).
        height: u64,
        /// The limit.
        max: u64,
    },
    /// Not a well-formed image of its type.
    #[error("the image could not be decoded: {0}")]
    Undecodable(String),
}

/// A processed image.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The re-encoded image.
    pub bytes: Vec<u8>,
    /// Its MIME type.
    pub content_type: &'static str,
    /// Width after orientation.
    pub width: u32,
    /// Height after orientation.
    pub height: u32,
    /// The JPEG thumbnail.
    pub thumbnail: Vec<u8>,
    /// Thumbnail width.
    pub thumbnail_width: u32,
    /// Thumbnail height.
    pub thumbnail_height: u32,
}

/// Limits for [`process`].
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Most pixels in the image (all frames together for animations).
    pub max_pixels: u64,
    /// Longest side of the thumbnail.
    pub thumbnail_size: u32,
}

impl ImageLimits {
    /// The decoder's allocation budget: the pixels at up to 16 bytes each
    /// (RGBA with 32-bit floats), which no accepted image exceeds.
    fn decoder_limits(&self) -> Limits {
        let mut limits = Limits::default();
        limits.max_alloc = Some(self.max_pixels.saturating_mul(16));
        limits
    }
}

/// Processes an upload detected as `content_type` (one of the accepted
/// image types).
pub fn process(data: &[u8], content_type: &str, limits: ImageLimits) -> Result<Processed, ImageError> {
    let format = match content_type {
        "image/jpeg" => ImageFormat::Jpeg,
        "image/png" => ImageFormat::Png,
        "image/webp" => ImageFormat::WebP,
        "image/gif" => return process_gif(data, limits),
        other => return Err(ImageError::Undecodable(format!("{other} is not an accepted image type"))),
    };
    let img = decode_upright(data, format, limits)?;
    let has_alpha = img.color().has_alpha();
    let (bytes, content_type) = match format {
        ImageFormat::Png => (encode_png(&img)?, "image/png"),
        ImageFormat::WebP if has_alpha => (encode_png(&img)?, "image/png"),
        _ => (encode_jpeg(&img, 90)?, "image/jpeg"),
    };
    let thumb = thumbnail(&img, limits.thumbnail_size)?;
    Ok(Processed {
        bytes,
        content_type,
        width: img.width(),
        height: img.height(),
        thumbnail: thumb.0,
        thumbnail_width: thumb.1,
        thumbnail_height: thumb.2,
    })
}

fn bad(e: impl std::fmt::Display) -> ImageError {
    ImageError::Undecodable(e.to_string())
}

fn check_pixels(width: u64, height: u64, limits: ImageLimits) -> Result<(), ImageError> {
    if width.saturating_mul(height) > limits.max_pixels {
        return Err(ImageError::TooManyPixels { width, height, max: limits.max_pixels });
    }
    Ok(())
}

/// Decodes with limits and applies the EXIF orientation.
fn decode_upright(data: &[u8], format: ImageFormat, limits: ImageLimits) -> Result<DynamicImage, ImageError> {
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    reader.limits(limits.decoder_limits());
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let (width, height) = decoder.dimensions();
    check_pixels(u64::from(width), u64::from(height), limits)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    Ok(img)
}

fn encode_png(img: &DynamicImage) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    img.write_with_encoder(PngEncoder::new(&mut out)).map_err(bad)?;
    Ok(out)
}

fn encode_jpeg(img: &DynamicImage, quality: u8) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let encoder = JpegEncoder::new_with_quality(&mut out, quality);
    match img {
        DynamicImage::ImageLuma8(gray) => gray.write_with_encoder(encoder).map_err(bad)?,
        DynamicImage::ImageRgb8(rgb) => rgb.write_with_encoder(encoder).map_err(bad)?,
        other => flatten(other).write_with_encoder(encoder).map_err(bad)?,
    }
    Ok(out)
}

/// RGB over a white background.
fn flatten(img: &DynamicImage) -> image::RgbImage {
    let rgba = img.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over = |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    })
}

fn thumbnail(img: &DynamicImage, size: u32) -> Result<(Vec<u8>, u32, u32), ImageError> {
    let small = if img.width() > size || img.height() > size { img.thumbnail(size, size) } else { img.clone() };
    Ok((encode_jpeg(&small, 80)?, small.width(), small.height()))
}

fn process_gif(data: &[u8], limits: ImageLimits) -> Result<Processed, ImageError> {
    let mut options = gif::DecodeOptions::new();
    // Frames stay LZW-compressed: nothing is decompressed here, and the
    // copy is exact.
    options.skip_frame_decoding(true);
    options.set_memory_limit(gif::MemoryLimit::Bytes(
        std::num::NonZeroU64::new(limits.max_pixels.max(1)).unwrap_or(std::num::NonZeroU64::MIN),
    ));
    let mut decoder = options.read_info(Cursor::new(data)).map_err(bad)?;
    let (width, height) = (decoder.width(), decoder.height());
    check_pixels(u64::from(width), u64::from(height), limits)?;
    let palette = decoder.global_palette().map(<[u8]>::to_vec).unwrap_or_default();
    let repeat = decoder.repeat();
    let mut out = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut out, width, height, &palette).map_err(bad)?;
        if repeat != gif::Repeat::Finite(0) {
            encoder.set_repeat(repeat).map_err(bad)?;
        }
        let mut frame_pixels: u64 = 0;
        while let Some(frame) = decoder.read_next_frame().map_err(bad)? {
            frame_pixels += u64::from(frame.width) * u64::from(frame.height);
            check_pixels(frame_pixels, 1, limits)?;
            encoder.write_lzw_pre_encoded_frame(frame).map_err(bad)?;
        }
        if frame_pixels == 0 {
            return Err(ImageError::Undecodable("the GIF has no frames".into()));
        }
    }
    // The thumbnail comes from the first frame, decoded under limits.
    let first = decode_upright(&out, ImageFormat::Gif, limits)?;
    let thumb = thumbnail(&first, limits.thumbnail_size)?;
    Ok(Processed {
        bytes: out,
        content_type: "image/gif",
        width: u32::from(width),
        height: u32::from(height),
        thumbnail: thumb.0,
        thumbnail_width: thumb.1,
        thumbnail_height: thumb.2,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LIMITS: ImageLimits = ImageLimits { max_pixels: 50_000_000, thumbnail_size: 320 };

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
        let mut out = Vec::new();
        img.write_with_encoder(PngEncoder::new(&mut out)).unwrap();
        out
    }

    #[test]
    fn thumbnails_keep_the_aspect_ratio() {
        let p = process(&png(1000, 500), "image/png", LIMITS).unwrap();
        assert_eq!((p.width, p.height), (1000, 500));
        assert_eq!((p.thumbnail_width, p.thumbnail_height), (320, 160));
        let thumb = image::load_from_memory(&p.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 160));
        // Small images keep their size.
        let p = process(&png(100, 40), "image/png", LIMITS).unwrap();
        assert_eq!((p.thumbnail_width, p.thumbnail_height), (100, 40));
    }

    #[test]
    fn too_many_pixels_are_refused_before_decoding() {
        let limits = ImageLimits { max_pixels: 10_000, ..LIMITS };
        let err = process(&png(200, 100), "image/png", limits).unwrap_err();
        assert_eq!(err, ImageError::TooManyPixels { width: 200, height: 100, max: 10_000 });
        assert!(matches!(
            process(b"\x89PNG\r\n\x1a\nnot really", "image/png", LIMITS),
            Err(ImageError::Undecodable(_))
        ));
    }

    #[test]
    fn gifs_keep_their_frames_and_lose_their_comments() {
        let mut data = Vec::new();
        {
            let palette = [0u8, 0, 0, 255, 255, 255];
            let mut enc = gif::Encoder::new(&mut data, 4, 2, &palette).unwrap();
            enc.set_repeat(gif::Repeat::Infinite).unwrap();
            enc.write_raw_extension(gif::Extension::Comment.into(), &[b"SECRET-COMMENT"]).unwrap();
            for i in 0..3u8 {
                let mut frame = gif::Frame::from_indexed_pixels(4, 2, vec![i % 2; 8], None);
                frame.delay = 10;
                enc.write_frame(&frame).unwrap();
            }
        }
        assert!(data.windows(14).any(|w| w == b"SECRET-COMMENT"));
        let p = process(&data, "image/gif", LIMITS).unwrap();
        assert!(!p.bytes.windows(14).any(|w| w == b"SECRET-COMMENT"));
        let mut decoder = gif::DecodeOptions::new().read_info(Cursor::new(&p.bytes)).unwrap();
        let mut frames = 0;
        while let Some(frame) = decoder.read_next_frame().unwrap() {
            assert_eq!(frame.delay, 10);
            frames += 1;
        }
        assert_eq!(frames, 3);
        assert_eq!(decoder.repeat(), gif::Repeat::Infinite);
        assert_eq!((p.thumbnail_width, p.thumbnail_height), (4, 2));
    }
}
