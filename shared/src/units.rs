//! Sizes as people write and read them: `200M` in, `190.7 MiB` out.

/// Formats a byte count with a binary unit: `512 B`, `1.5 KiB`, `200.0 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Parses a size such as `4096`, `64K`, `200M` or `1G` (powers of 1024;
/// an optional `B`, `iB` and lower case are accepted: `200MiB`, `2g`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let number_part = upper.trim_end_matches(['B', 'I']).trim_end();
    let (digits, shift) = match number_part.char_indices().last() {
        Some((i, 'K')) => (&number_part[..i], 10),
        Some((i, 'M')) => (&number_part[..i], 20),
        Some((i, 'G')) => (&number_part[..i], 30),
        Some((i, 'T')) => (&number_part[..i], 40),
        _ => (upper.trim_end_matches('B'), 0),
    };
    let bad = || format!("'{trimmed}' is not a size (examples: 4096, 64K, 200M, 1G)");
    let count: u64 = digits.trim().parse().map_err(|_| bad())?;
    count.checked_mul(1 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_parsed() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 * 1024));
        assert_eq!(parse_size("200M"), Ok(200 << 20));
        assert_eq!(parse_size("200MiB"), Ok(200 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("10B"), Ok(10));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-5M").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn bytes_are_formatted() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(200 << 20), "200.0 MiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
    }
}
