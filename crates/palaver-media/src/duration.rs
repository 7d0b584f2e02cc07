//! Playing time of audio and video, read from their headers with `lofty`
//! (MP3, AAC, M4A and MP4 with a sound track, Ogg Vorbis and Opus, FLAC,
//! WAV, AIFF). The file is read through a seeking reader over the stored
//! object, so only the few chunks holding headers are fetched and opened.
//! Formats lofty does not read (WebM, Matroska, silent MP4) get no duration.

use std::io::{Read, Seek};

use lofty::config::ParseOptions;
use lofty::file::AudioFile as _;
use lofty::probe::Probe;

/// The duration in milliseconds, when the headers tell it.
pub fn duration_ms<R: Read + Seek>(reader: R) -> Option<i64> {
    let probe = Probe::new(std::io::BufReader::new(reader))
        .options(ParseOptions::new().read_tags(false).read_cover_art(false))
        .guess_file_type()
        .ok()?;
    let file = probe.read().ok()?;
    let ms = file.properties().duration().as_millis();
    (ms > 0).then(|| i64::try_from(ms).ok()).flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A mono 16-bit PCM WAV of `ms` milliseconds at 8 kHz.
    pub fn wav(ms: u32) -> Vec<u8> {
        let samples = 8 * ms;
        let data_len = samples * 2;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&8000u32.to_le_bytes());
        out.extend_from_slice(&16000u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        out.extend((0..samples).flat_map(|i| ((i % 64) as i16 * 200).to_le_bytes()));
        out
    }

    #[test]
    fn wav_duration() {
        assert_eq!(duration_ms(std::io::Cursor::new(wav(1500))), Some(1500));
        assert_eq!(duration_ms(std::io::Cursor::new(b"not audio".to_vec())), None);
    }
}
