//! Check characters of the identifiers Chinese public data is keyed by.
//!
//! - Citizen ID number (公民身份号码), GB 11643-1999: 6-digit address code, 8-digit birth date,
//!   3-digit sequence (odd for men, even for women), ISO 7064 MOD 11-2 check character.
//! - Organization code (组织机构代码), GB 11714-1997: 8 body characters and a MOD 11 check.
//! - Unified social credit code (统一社会信用代码), GB 32100-2015: registration authority, type,
//!   6-digit address code, 9-character organization code, MOD 31 check character.
//!
//! The generator uses these to make valid identifiers; the output audit will use the validators
//! to spot identifiers in results.

/// ISO 7064 MOD 11-2 check character of the first 17 digits of a citizen ID number.
pub fn citizen_id_check(first17: &[u8; 17]) -> u8 {
    // Weight of position i is 2^(17-i) mod 11.
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    b"10X98765432"[(sum % 11) as usize]
}

/// Whether `s` is an 18-character citizen ID number with a valid check character and a real
/// calendar birth date.
pub fn is_valid_citizen_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    let (year, month, day) = (digits(6..10), digits(10..12), digits(12..14));
    if !(1850..=2100).contains(&year) || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return false;
    }
    let first17: &[u8; 17] = b[..17].try_into().expect("17 bytes");
    citizen_id_check(first17) == b[17].to_ascii_uppercase()
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The 31 characters of GB 32100: digits and capitals without I, O, Z, S, V.
const USCC_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

fn uscc_value(c: u8) -> Option<u32> {
    USCC_CHARS.iter().position(|&x| x == c).map(|p| p as u32)
}

/// GB 11714 check character of an organization code's 8 body characters.
pub fn organization_code_check(body: &[u8; 8]) -> Option<u8> {
    const WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let mut sum = 0;
    for (&c, w) in body.iter().zip(WEIGHTS) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return None,
        };
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        n => b'0' + n as u8,
    })
}

/// GB 32100 check character of the first 17 characters of a unified social credit code.
pub fn uscc_check(first17: &[u8; 17]) -> Option<u8> {
    // Weight of position i is 3^i mod 31.
    const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let mut sum = 0;
    for (&c, w) in first17.iter().zip(WEIGHTS) {
        sum += uscc_value(c)? * w;
    }
    Some(USCC_CHARS[((31 - sum % 31) % 31) as usize])
}

/// Whether `s` is an 18-character unified social credit code with a valid check character.
pub fn is_valid_uscc(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 {
        return false;
    }
    let first17: &[u8; 17] = b[..17].try_into().expect("17 bytes");
    uscc_check(first17) == Some(b[17])
}

/// Builds a citizen ID number from its parts.
pub(crate) fn citizen_id(region: &str, year: i32, month: u32, day: u32, sequence: u16) -> String {
    let mut first17 = [0u8; 17];
    let head = format!("{region}{year:04}{month:02}{day:02}{sequence:03}");
    first17.copy_from_slice(head.as_bytes());
    let mut id = head;
    id.push(char::from(citizen_id_check(&first17)));
    id
}

/// Builds a unified social credit code: authority `9` (market regulation), `kind` (`1` enterprise,
/// `2` individual business, `3` farmers' cooperative), the region, and an organization code whose
/// 8 digits come from `serial` (distinct serials give distinct codes).
pub(crate) fn uscc(kind: u8, region: &str, serial: u32) -> String {
    let body = format!("{:08}", serial % 100_000_000);
    let body_bytes: &[u8; 8] = body.as_bytes().try_into().expect("8 digits");
    let org_check = organization_code_check(body_bytes).expect("digits");
    let head = format!("9{}{region}{body}{}", char::from(kind), char::from(org_check));
    let first17: &[u8; 17] = head.as_bytes().try_into().expect("17 characters");
    let check = uscc_check(first17).expect("valid characters");
    let mut code = head;
    code.push(char::from(check));
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citizen_id_examples_from_gb_11643() {
        // The two worked examples printed in GB 11643-1999.
        assert!(is_valid_citizen_id("11010519491231002X"));
        assert!(is_valid_citizen_id("440524188001010014"));
        assert!(!is_valid_citizen_id("110105194912310021"));
        assert!(!is_valid_citizen_id("11010519491331002X"), "month 13");
        assert!(!is_valid_citizen_id("11010519490230002X"), "30 February");
        assert_eq!(citizen_id("110105", 1949, 12, 31, 2), "11010519491231002X");
    }

    #[test]
    fn uscc_known_answers() {
        assert!(is_valid_uscc("91350100M000100Y43"), "the sample code used across validator docs");
        // Codes issued in a pilot region before GB 32100 whose printed check characters do not
        // follow the standard; the published note (id-rule) gives what the standard computes.
        for (code, computed) in
            [("91350100M0001TGQXM", b'1'), ("91350211M0000XUF46", b'R'), ("91350203M0001FUE2P", b'J')]
        {
            let first17: &[u8; 17] = code.as_bytes()[..17].try_into().unwrap();
            assert_eq!(uscc_check(first17), Some(computed), "{code}");
            assert!(!is_valid_uscc(code));
        }
    }

    #[test]
    fn uscc_round_trip_and_single_error_detection() {
        let code = uscc(b'1', "150203", 12_345_678);
        assert!(is_valid_uscc(&code), "{code}");
        // MOD 31 catches every single-character substitution.
        for i in 0..18 {
            for &c in USCC_CHARS {
                let mut b = code.clone().into_bytes();
                if b[i] == c {
                    continue;
                }
                b[i] = c;
                assert!(!is_valid_uscc(std::str::from_utf8(&b).unwrap()));
            }
        }
    }
}
