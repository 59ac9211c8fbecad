//! QR codes for enrolment: in the terminal, as PNG, or as SVG.

use qrcode::render::{svg, unicode};
use qrcode::{Color, EcLevel, QrCode};
use std::io::Write;
use std::path::Path;

fn code(text: &str) -> Result<QrCode, String> {
    QrCode::with_error_correction_level(text, EcLevel::M)
        .map_err(|e| format!("cannot make a QR code: {e}"))
}

/// Two modules per character cell with half blocks, dark on light with a quiet zone, which
/// phone cameras read from an ordinary terminal.
pub fn terminal(text: &str) -> Result<String, String> {
    Ok(code(text)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

pub fn svg(text: &str) -> Result<String, String> {
    Ok(code(text)?.render::<svg::Color<'_>>().min_dimensions(256, 256).build())
}

/// A grey-scale PNG, `scale` pixels per module, with a four-module quiet zone.
pub fn png(text: &str, scale: u32) -> Result<Vec<u8>, String> {
    let qr = code(text)?;
    let width = qr.width() as u32;
    let quiet = 4;
    let side = (width + 2 * quiet) * scale;
    let colors = qr.to_colors();
    let mut pixels = vec![255u8; (side * side) as usize];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i as u32 % width, i as u32 / width);
        for dy in 0..scale {
            let y = (my + quiet) * scale + dy;
            let start = (y * side + (mx + quiet) * scale) as usize;
            pixels[start..start + scale as usize].fill(0);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(&pixels).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Writes an image that encodes a secret: created 0600, never over an existing file.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_rendering_uses_half_blocks_and_has_a_quiet_zone() {
        let text = terminal("otpauth://totp/X:y?secret=JBSWY3DPEHPK3PXP&issuer=X").unwrap();
        assert!(text.contains('▀') || text.contains('▄'));
        let first = text.lines().next().unwrap();
        assert!(first.chars().all(|c| c == '█'), "quiet zone row should be all light: {first}");
    }

    #[test]
    fn png_output_is_a_png() {
        let bytes = png("hello", 4).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
