//! Identifier patterns: values that must never appear in an output, whole or embedded in a
//! longer text. Checksums keep false alarms rare: an 18-digit run is a citizen ID number only if
//! its GB 11643 check character and birth date are valid.

/// Which kind of identifier a text contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Identifier {
    /// 居民身份证号码 (GB 11643), check character valid.
    CitizenId,
    /// 统一社会信用代码 (GB 32100), check character valid.
    Uscc,
    /// A mainland mobile number.
    Mobile,
    Email,
    /// 16 to 19 digits with a valid Luhn check digit.
    BankCard,
    /// 16 or more hexadecimal digits with letters and digits mixed: a pseudonym or part of one.
    Pseudonym,
}

impl Identifier {
    pub fn en(self) -> &'static str {
        match self {
            Identifier::CitizenId => "a citizen ID number",
            Identifier::Uscc => "a unified social credit code",
            Identifier::Mobile => "a mobile number",
            Identifier::Email => "an e-mail address",
            Identifier::BankCard => "a bank card number",
            Identifier::Pseudonym => "a pseudonym",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Identifier::CitizenId => "居民身份证号码",
            Identifier::Uscc => "统一社会信用代码",
            Identifier::Mobile => "手机号码",
            Identifier::Email => "电子邮箱地址",
            Identifier::BankCard => "银行卡号",
            Identifier::Pseudonym => "去标识化后的假名",
        }
    }
}

/// The first identifier found in `text`, if any: as written, or once full-width forms are read
/// as ASCII and everything between letters and digits is dropped ("１３８-0013 8000").
pub fn find(text: &str) -> Option<Identifier> {
    find_as_written(text).or_else(|| {
        let compact = compact(text);
        (compact != text).then(|| find_as_written(&compact)).flatten()
    })
}

/// A citizen ID number or unified social credit code spelled across `texts` (a row's strings,
/// in order), separators and full-width forms ignored. Only these two kinds: their check
/// characters keep false alarms rare in the long digit runs that legitimate labels glued
/// together make (a district code, a year, a month...).
pub fn find_across(texts: &[&str]) -> Option<Identifier> {
    let joined: String = texts.iter().map(|t| compact(t)).collect();
    let upper: Vec<char> = joined.to_ascii_uppercase().chars().collect();
    upper.windows(18).find_map(|w| {
        if is_citizen_id(w) {
            Some(Identifier::CitizenId)
        } else if is_uscc(w) {
            Some(Identifier::Uscc)
        } else {
            None
        }
    })
}

/// Full-width ASCII forms (U+FF01–U+FF5E) read as ASCII, then only ASCII letters and digits kept.
fn compact(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

fn find_as_written(text: &str) -> Option<Identifier> {
    if looks_like_email(text) {
        return Some(Identifier::Email);
    }
    let chars: Vec<char> = text.chars().collect();
    for run in runs(&chars, |c| c.is_ascii_alphanumeric()) {
        if let Some(found) = in_alphanumeric_run(run) {
            return Some(found);
        }
    }
    None
}

/// The identifier a number spells, if any: a mobile number or a bank card sent as a number, or
/// a fraction carrying the digits (0.13912345678). A computed fraction shows 16 or 17
/// significant digits of rounding noise, in which some run of digits will pass a checksum by
/// chance; so fractions are read only when their shortest form is short, as a chosen value's is.
pub fn find_in_number(value: f64) -> Option<Identifier> {
    if !value.is_finite() {
        return None;
    }
    // Rust prints the shortest text that reads back as the same number, so a fraction's digits
    // end in a non-zero one and their count is its significant digits.
    let text = format!("{}", value.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let whole: Vec<char> = whole.trim_start_matches('0').chars().collect();
    let fraction: Vec<char> = fraction.chars().collect();
    if !fraction.is_empty() && whole.len() + fraction.len() > 15 {
        return None;
    }
    // The digits may be the whole part (13912345678.25), the fraction (0.13912345678, or with
    // zeros in front) or both read together.
    let joined: Vec<char> = whole.iter().chain(&fraction).copied().collect();
    let fraction: Vec<char> = fraction.iter().copied().skip_while(|&c| c == '0').collect();
    [whole, fraction, joined].iter().filter(|run| !run.is_empty()).find_map(|run| in_digit_run(run))
}

fn runs(chars: &[char], keep: impl Fn(char) -> bool) -> impl Iterator<Item = &[char]> {
    chars.split(move |&c| !keep(c)).filter(|run| !run.is_empty())
}

fn looks_like_email(text: &str) -> bool {
    text.split_whitespace().any(|word| {
        let Some((local, domain)) = word.split_once('@') else { return false };
        let Some((_, tld)) = domain.rsplit_once('.') else { return false };
        !local.is_empty()
            && domain.len() > tld.len() + 1
            && tld.len() >= 2
            && tld.chars().all(|c| c.is_ascii_alphabetic())
    })
}

fn in_alphanumeric_run(run: &[char]) -> Option<Identifier> {
    let text: String = run.iter().collect();
    let upper = text.to_ascii_uppercase();
    let upper: Vec<char> = upper.chars().collect();
    // Every 18-character window: a USCC or an ID number may be glued to other text.
    for window in upper.windows(18) {
        if is_citizen_id(window) {
            return Some(Identifier::CitizenId);
        }
        if is_uscc(window) {
            return Some(Identifier::Uscc);
        }
    }
    let hex = run.iter().all(|c| c.is_ascii_hexdigit());
    if hex && run.len() >= 16 && run.iter().any(|c| c.is_ascii_digit()) && run.iter().any(|c| c.is_ascii_alphabetic()) {
        return Some(Identifier::Pseudonym);
    }
    for digits in runs(run, |c| c.is_ascii_digit()) {
        if let Some(found) = in_digit_run(digits) {
            return Some(found);
        }
    }
    None
}

fn in_digit_run(run: &[char]) -> Option<Identifier> {
    for window in run.windows(18) {
        if is_citizen_id(window) {
            return Some(Identifier::CitizenId);
        }
    }
    for len in (16..=19).rev() {
        if run.len() == len && luhn(run) {
            return Some(Identifier::BankCard);
        }
    }
    // 11 digits starting 13-19, alone or after the country code 86.
    let mobile = |w: &[char]| w[0] == '1' && ('3'..='9').contains(&w[1]);
    match run.len() {
        11 if mobile(run) => Some(Identifier::Mobile),
        13 if run[..2] == ['8', '6'] && mobile(&run[2..]) => Some(Identifier::Mobile),
        _ => None,
    }
}

/// GB 11643-1999: 17 digits, a check character, and a real birth date in positions 7 to 14.
fn is_citizen_id(id: &[char]) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
    if id.len() != 18 || !id[..17].iter().all(char::is_ascii_digit) {
        return false;
    }
    let sum: u32 = id[..17].iter().zip(WEIGHTS).map(|(c, w)| c.to_digit(10).unwrap_or(0) * w).sum();
    if CHECK[(sum % 11) as usize] != id[17] {
        return false;
    }
    let birth: String = id[6..14].iter().collect();
    chrono::NaiveDate::parse_from_str(&birth, "%Y%m%d")
        .is_ok_and(|d| (1880..=2100).contains(&chrono::Datelike::year(&d)))
}

/// GB 32100-2015: 18 characters of the code's 31-character alphabet, the last a check.
fn is_uscc(code: &[char]) -> bool {
    const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    if code.len() != 18 {
        return false;
    }
    let value = |c: &char| ALPHABET.find(*c).map(|i| i as u32);
    let Some(values) = code.iter().map(value).collect::<Option<Vec<u32>>>() else { return false };
    // A plain number is not a USCC: real codes carry letters in the organization code or check.
    if code.iter().all(char::is_ascii_digit) && !is_plausible_numeric_uscc(code) {
        return false;
    }
    let sum: u32 = values[..17].iter().zip(WEIGHTS).map(|(v, w)| v * w).sum();
    (31 - sum % 31) % 31 == values[17]
}

/// An all-digit USCC still starts with a registration authority (1-9) and an entity kind.
fn is_plausible_numeric_uscc(code: &[char]) -> bool {
    matches!(code[0], '1'..='9') && matches!(code[1], '1'..='9') && code[2..8].iter().all(char::is_ascii_digit)
}

fn luhn(digits: &[char]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap_or(0);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_examples_are_found() {
        // The example number in GB 11643-1999's annex, and a USCC in GB 32100-2015's form.
        assert_eq!(find("11010519491231002X"), Some(Identifier::CitizenId));
        assert_eq!(find("区县110105194912310021"), None, "wrong check character");
        assert_eq!(find("91350100M000100Y43"), Some(Identifier::Uscc));
        assert_eq!(find("13800138000"), Some(Identifier::Mobile));
        assert_eq!(find("+86 13800138000"), Some(Identifier::Mobile));
        assert_eq!(find("a.b@example.cn"), Some(Identifier::Email));
        assert_eq!(find("6222020200112233"), None, "Luhn fails");
        assert_eq!(find("4111111111111111"), Some(Identifier::BankCard));
        assert_eq!(find("e3b0c44298fc1c149afbf4c8996fb924"), Some(Identifier::Pseudonym));
        for plain in ["150202", "35-59", "2025Q1", "制造业", "district=150203", "month=2025-06", "12345678"] {
            assert_eq!(find(plain), None, "{plain}");
        }
    }

    #[test]
    fn numbers_carrying_identifiers_are_found() {
        assert_eq!(find_in_number(13800138000.0), Some(Identifier::Mobile));
        assert_eq!(find_in_number(0.13912345678), Some(Identifier::Mobile));
        assert_eq!(find_in_number(4111111111111111.0), Some(Identifier::BankCard));
        assert_eq!(find_in_number(1234.5), None);
        assert_eq!(find_in_number(25_000_000.0), None);
        // Rounding noise is not read: some 16-digit run of it passes Luhn by chance.
        assert_eq!(find_in_number(1234.567890123456), None);
    }
}
