//! Inclusion–exclusion of three released cells (容斥): a cell less two cells it holds — a
//! district, its shops below a revenue band and its shops above another, released by anyone in
//! any order — is the few units between them. Pairs of cells are compared in differencing and
//! pairs of tables in the margins; this pass relates one cell of this run to two other released
//! cells.
//!
//! Candidates come from the rows: the crossings the margins already read tell which cells of two
//! tables lie within which ([`Nested`], but for fewer rows than a cell needs units). The three
//! are then related by their units' sketches: for a big cell `C` and two cells `A`, `B`,
//! `χ_C / (χ_A χ_B)` is a polynomial of a few units' degree exactly when `A` and `B` are
//! disjoint, lie within `C`, and leave those units over (one interpolation, as in
//! [`Sketch::holds_all_of`]); `χ_A χ_B / χ_C` likewise when `A` and `B` cover `C` and overlap
//! in a few units. Where this run's cell is `C`, `A` and `B` are cells within it, or the sums
//! of other tables' cells within it ([`sum_of`]); where it is `A`, `C` holds it and `B` is any
//! released cell of the size `C` less it leaves room for.
//!
//! What the remainder gives away decides: fewer units than `min_units` between `C` and the two,
//! on either side or both, where all three leave a figure of one quantity; or units (up to
//! [`MAX_DIFFERENCE`]) whose sum a few of them dominate — the big cell's contributions above both
//! smaller cells' largest are in a remainder, as for a pair ([`crate::judge::Dominated`]), and a
//! largest both parts and the big cell share, held once, is in an overlap. This run's cell is
//! then withheld, and the margins run again to protect it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::differencing::{MAX_DIFFERENCE, Sketch};
use crate::evidence::{self, Crossing};
use crate::judge::{self, HostTable};
use crate::{CellFinding, Judged, ReleasedCell, Rule, Verdict, quantities};

/// Cell `inner` (table, row) lies within cell `outer` of another table, but for at most the
/// slack's rows, and has fewer rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nested {
    pub(crate) inner: (usize, usize),
    pub(crate) outer: (usize, usize),
}

/// The cells of tables `a` (`x`) and `b` (`y`) that lie within one another, read from their
/// crossing: all of the inner cell's rows but at most `slack` are in the outer one.
pub(crate) fn nestings(
    (a, x): (usize, &HostTable),
    (b, y): (usize, &HostTable),
    crossing: &Crossing,
    slack: u64,
) -> Vec<Nested> {
    fn index(keys: &[evidence::Key]) -> HashMap<&evidence::Key, usize> {
        keys.iter().enumerate().map(|(i, k)| (k, i)).collect()
    }
    let (xs, ys) = (index(&x.keys), index(&y.keys));
    let (mut rows_x, mut rows_y) = (vec![0u64; x.keys.len()], vec![0u64; y.keys.len()]);
    let mut shared = Vec::new();
    for part in crossing.parts.iter().filter(|p| p.rows > 0) {
        let i = part.a.as_ref().and_then(|k| xs.get(k).copied());
        let j = part.b.as_ref().and_then(|k| ys.get(k).copied());
        if let Some(i) = i {
            rows_x[i] += part.rows;
        }
        if let Some(j) = j {
            rows_y[j] += part.rows;
        }
        if let (Some(i), Some(j)) = (i, j) {
            shared.push((i, j, part.rows));
        }
    }
    let mut nested = Vec::new();
    for (i, j, rows) in shared {
        if rows_y[j] < rows_x[i] && rows_y[j] - rows <= slack {
            nested.push(Nested { inner: (b, j), outer: (a, i) });
        }
        if rows_x[i] < rows_y[j] && rows_x[i] - rows <= slack {
            nested.push(Nested { inner: (a, i), outer: (b, j) });
        }
    }
    nested
}

/// A released cell as this pass reads it: its sketch and totals, and where it is a cell of a
/// table judged now (this run's, or an earlier table), which figures of it leave.
#[derive(Clone, Copy)]
struct Known<'c> {
    cell: &'c ReleasedCell,
    at: Option<(usize, usize)>,
}

/// One cell of this run and two other released cells whose sum and difference leave a few
/// units (`units`), too few or (`column`) dominated.
struct Triple {
    at: (usize, usize),
    others: [String; 2],
    units: usize,
    column: Option<String>,
}

/// The released cells this pass relates: by label (an earlier table's rows are found by it)
/// and by dataset and size.
struct Index<'c> {
    by_label: HashMap<&'c str, Vec<Known<'c>>>,
    by_size: BTreeMap<(&'c str, u64), Vec<Known<'c>>>,
}

impl<'c> Index<'c> {
    /// One entry per label and distinct units: a table released again over the same rows (a
    /// module run every day on data that did not change) adds nothing to relate, and must not
    /// multiply the pairs to try (red team round 6, D1). This run's cells come first.
    fn new(earlier: &'c [ReleasedCell], this_run: &'c [(usize, usize, ReleasedCell)]) -> Index<'c> {
        let mut index = Index { by_label: HashMap::new(), by_size: BTreeMap::new() };
        let mut labelled: HashSet<(&str, Units<'_>)> = HashSet::new();
        let mut sized: HashSet<Units<'_>> = HashSet::new();
        let known = (this_run.iter().map(|(t, r, cell)| Known { cell, at: Some((*t, *r)) }))
            .chain(earlier.iter().map(|cell| Known { cell, at: None }));
        for k in known {
            // This run's cells of the same units in two tables are both kept: each is a row.
            if labelled.insert((k.cell.label.as_str(), units(k.cell))) || k.at.is_some() {
                index.by_label.entry(k.cell.label.as_str()).or_default().push(k);
            }
            if sized.insert(units(k.cell)) {
                index.by_size.entry((k.cell.dataset.as_str(), k.cell.sketch.size)).or_default().push(k);
            }
        }
        index
    }

    /// The released cells at (table, row), of the dataset it counts: this run's by position,
    /// an earlier table's by label (a module released every month has one label for all months).
    fn at(&self, judged: &[Judged<'_>], (t, r): (usize, usize)) -> Vec<Known<'c>> {
        let table = &judged[t];
        let label = format!("{} [{}]", table.label, judge::label(&table.host.keys[r]));
        let dataset = evidence::counted(table.spec);
        (self.by_label.get(label.as_str()).into_iter().flatten())
            .filter(|k| k.cell.dataset == dataset && (table.fixed || k.at == Some((t, r))))
            .map(|k| Known { at: Some((t, r)), ..*k })
            .collect()
    }
}

/// A cell's units, as a key: its dataset, size and two evaluations of its characteristic
/// polynomial (two sets alike there but for a chance of 2⁻¹²² are the same set; hashing all
/// 64 cost more than the pass).
type Units<'c> = (&'c str, u64, [u64; 2]);

fn units(cell: &ReleasedCell) -> Units<'_> {
    let e = &cell.sketch.evaluations;
    (cell.dataset.as_str(), cell.sketch.size, [e.first().copied().unwrap_or(0), e.get(1).copied().unwrap_or(0)])
}

/// `cells` less those with the same units as one before them.
fn distinct(cells: Vec<Known<'_>>) -> Vec<Known<'_>> {
    let mut seen = HashSet::new();
    cells.into_iter().filter(|c| seen.insert(units(c.cell))).collect()
}

/// Withholds every cell of this run that two other released cells relate to as above; whether
/// any was. `earlier` are the history's cells, `this_run` this run's (table, row, cell) that
/// passed differencing.
pub(crate) fn withhold_triples(
    judged: &mut [Judged<'_>],
    nested: &[Nested],
    earlier: &[ReleasedCell],
    this_run: &[(usize, usize, ReleasedCell)],
) -> bool {
    let index = Index::new(earlier, this_run);
    // Which cells lie within each cell, and which hold it.
    let mut within: HashMap<(usize, usize), Vec<(usize, usize)>> = HashMap::new();
    let mut holding: HashMap<(usize, usize), Vec<(usize, usize)>> = HashMap::new();
    for x in nested {
        within.entry(x.outer).or_default().push(x.inner);
        holding.entry(x.inner).or_default().push(x.outer);
    }
    let nested = Nesting { within, holding };
    let mut changed = false;
    for t in 0..judged.len() {
        for r in 0..judged[t].host.keys.len() {
            if judged[t].fixed || !crate::leaves(&judged[t], r) {
                continue;
            }
            let Some(me) = index.at(judged, (t, r)).into_iter().next() else { continue };
            if let Some(found) = triple(judged, me, &nested, &index) {
                withhold(&mut judged[t], found);
                changed = true;
            }
        }
    }
    changed
}

/// The cells within each cell and those that hold it, by (table, row).
struct Nesting {
    within: HashMap<(usize, usize), Vec<(usize, usize)>>,
    holding: HashMap<(usize, usize), Vec<(usize, usize)>>,
}

/// The first triple this run's cell `me` is in, as the big cell or as one of the two within.
fn triple<'c>(judged: &[Judged<'_>], me: Known<'c>, nested: &Nesting, index: &Index<'c>) -> Option<Triple> {
    let at = me.at.expect("this run's cell");
    let rules = &judged[at.0].rules;
    let k = rules.min_units;
    let leaving = |c: &Known<'_>| c.at.is_none_or(|(t, r)| crate::leaves(&judged[t], r));
    let n = me.cell.sketch.size;
    let reach = MAX_DIFFERENCE as u64;
    // As the big cell: two cells within it, or the sums of two tables' cells within it (adding
    // up a table's cells is as easy as reading one: red team round 6, R6), whose sizes add up to
    // within reach of its own.
    let within: Vec<Known<'c>> = distinct(
        (nested.within.get(&at).into_iter().flatten()).flat_map(|&x| index.at(judged, x)).filter(leaving).collect(),
    );
    let mut by_table: BTreeMap<usize, Vec<Known<'c>>> = BTreeMap::new();
    for c in &within {
        by_table.entry(c.at.map_or(usize::MAX, |(t, _)| t)).or_default().push(*c);
    }
    let sums: Vec<(usize, ReleasedCell)> = (by_table.iter())
        .filter(|(_, cells)| cells.len() > 1)
        .map(|(&t, cells)| (t, sum_of(&judged[t], cells)))
        .collect();
    // Each part with the table it is a sum of, if it is one.
    let mut parts: Vec<(Known<'_>, Option<usize>)> = within.iter().map(|c| (*c, None)).collect();
    parts.extend(sums.iter().map(|(t, cell)| (Known { cell, at: None }, Some(*t))));
    parts.sort_by_key(|(c, _)| c.cell.sketch.size);
    let table_of = |(c, sum): &(Known<'_>, Option<usize>)| sum.or(c.at.map(|(t, _)| t));
    for (i, a) in parts.iter().enumerate() {
        let size = a.0.cell.sketch.size;
        let (lo, hi) = (n.saturating_sub(reach + size), (n + k).saturating_sub(size));
        let rest = &parts[i + 1..];
        let start = rest.partition_point(|b| b.0.cell.sketch.size < lo);
        for b in rest[start..].iter().take_while(|b| b.0.cell.sketch.size <= hi) {
            // A table's sum holds its own cells.
            if (a.1.is_some() || b.1.is_some()) && table_of(a) == table_of(b) {
                continue;
            }
            if let Some(found) = judge_three(judged, me, [a.0, b.0], at, rules) {
                return Some(found);
            }
        }
    }
    // As one of the two: a cell that holds it, and any cell the size of the rest.
    let dataset = me.cell.dataset.as_str();
    let holding = distinct(
        (nested.holding.get(&at).into_iter().flatten()).flat_map(|&x| index.at(judged, x)).filter(leaving).collect(),
    );
    for c in holding {
        let room = c.cell.sketch.size.saturating_sub(n);
        let sizes = (dataset, room.saturating_sub(reach))..=(dataset, room + k);
        for b in index.by_size.range(sizes).flat_map(|(_, cells)| cells.iter().copied()) {
            if std::ptr::eq(b.cell, me.cell) || std::ptr::eq(b.cell, c.cell) || !leaving(&b) {
                continue;
            }
            if let Some(found) = judge_three(judged, c, [me, b], at, rules) {
                return Some(found);
            }
        }
    }
    None
}

/// The sum of `table`'s released `cells` (two or more, within one cell), as one cell: their
/// units together, and per column every cell has, the total and the two largest contributions.
fn sum_of(table: &Judged<'_>, cells: &[Known<'_>]) -> ReleasedCell {
    let mut sketch = Sketch::default();
    for c in cells {
        sketch.merge(&c.cell.sketch);
    }
    let first = &cells[0].cell;
    let magnitudes = (first.magnitudes.iter())
        .filter_map(|(column, _)| {
            let all: Vec<[f64; 3]> = (cells.iter())
                .map(|c| c.cell.magnitudes.iter().find(|(x, _)| x == column).map(|(_, m)| *m))
                .collect::<Option<_>>()?;
            let mut top: Vec<f64> = all.iter().flat_map(|m| [m[1], m[2]]).collect();
            top.sort_by(|a, b| b.total_cmp(a));
            Some((column.clone(), [all.iter().map(|m| m[0]).sum(), top[0], top.get(1).copied().unwrap_or(0.0)]))
        })
        .collect();
    ReleasedCell {
        dataset: first.dataset.clone(),
        label: format!("{} (∑ {} cells / 个单元格之和)", table.label, cells.len()),
        sketch,
        contributions: Vec::new(),
        magnitudes,
    }
}

/// Whether `big` less `parts` (or `parts` less `big`, where they overlap) is a few units that
/// leave: too few of them where all three show a figure of one quantity, or a few dominating
/// the sum of a column all three leave their totals of.
fn judge_three(
    judged: &[Judged<'_>],
    big: Known<'_>,
    parts: [Known<'_>; 2],
    at: (usize, usize),
    rules: &crate::policy::Rules,
) -> Option<Triple> {
    let k = rules.min_units as usize;
    let [a, b] = parts;
    let buckets = |c: &Known<'_>, i: usize| c.cell.sketch.buckets[i] as i64;
    let apart: Vec<i64> =
        (0..big.cell.sketch.buckets.len()).map(|i| buckets(&big, i) - buckets(&a, i) - buckets(&b, i)).collect();
    // Cheap first: units in one bucket of one side and not the other's are in the difference.
    let distance: i64 = apart.iter().map(|d| d.abs()).sum();
    if distance > MAX_DIFFERENCE as i64 {
        return None;
    }
    let mut sum: Sketch = a.cell.sketch.clone();
    sum.merge(&b.cell.sketch);
    // Fewer units than a cell needs between `big` and the two, on either side or both (a gap
    // less an overlap: C − A − B = R − O).
    let few = (distance < k as i64).then(|| sum.difference(&big.cell.sketch, k - 1)).flatten();
    // More: a remainder within `big` (A, B disjoint within it), or an overlap (A, B cover it).
    let (units, overlap) = match few {
        Some(0) => return None,
        Some(units) => (units, None),
        None if apart.iter().all(|&d| d >= 0) => (big.cell.sketch.holds_all_of(&sum)?, Some(false)),
        None if apart.iter().all(|&d| d <= 0) => (sum.holds_all_of(&big.cell.sketch)?, Some(true)),
        None => return None,
    };
    let gives = |c: &Known<'_>| -> Vec<String> {
        match c.at {
            Some((t, r)) => {
                let table = &judged[t];
                let mut own: Vec<String> = (table.spec.measures.iter().enumerate())
                    .filter(|&(j, _)| table.shown(j, r).is_some() && !table.overrides.contains_key(&(j, r)))
                    .flat_map(|(_, m)| quantities(m))
                    .collect();
                own.dedup();
                own
            }
            // A cell of the history whose table is not at hand: its count, and the sums it
            // left its own totals of.
            None => std::iter::once("count".to_owned())
                .chain(c.cell.magnitudes.iter().map(|(column, _)| format!("sum {column}")))
                .collect(),
        }
    };
    let (g_big, g_a, g_b) = (gives(&big), gives(&a), gives(&b));
    let common: Vec<&String> = g_big.iter().filter(|q| g_a.contains(q) && g_b.contains(q)).collect();
    let others = |me: (usize, usize)| -> [String; 2] {
        let mut names = [big, a, b].into_iter().filter(|c| c.at != Some(me)).map(|c| c.cell.label.clone());
        [names.next().unwrap_or_default(), names.next().unwrap_or_default()]
    };
    let Some(overlap) = overlap else {
        return (!common.is_empty()).then(|| Triple { at, others: others(at), units, column: None });
    };
    // Units enough: their sum must not be dominated. Which contributions are in it is read from
    // the cells' two largest: `big`'s above both parts' largest are in a remainder; a largest
    // that both parts and `big` share, and `big` holds once, is one unit, in the overlap.
    let magnitudes = |c: &Known<'_>, column: &str| c.cell.magnitudes.iter().find(|(x, _)| x == column).map(|(_, m)| *m);
    common.iter().filter_map(|q| q.strip_prefix("sum ")).find_map(|column| {
        let (m, ma, mb) = (magnitudes(&big, column)?, magnitudes(&a, column)?, magnitudes(&b, column)?);
        let (top, total) = if overlap {
            let shared = ma[1] == mb[1] && ma[1] == m[1] && m[2] < m[1];
            (if shared { m[1] } else { 0.0 }, ma[0] + mb[0] - m[0])
        } else {
            let floor = ma[1].max(mb[1]);
            let top = [m[1], m[2]].into_iter().filter(|&x| x > floor).take(rules.dominance_n.max(1)).sum();
            (top, m[0] - ma[0] - mb[0])
        };
        (total > 0.0 && top > rules.dominance_k * total).then(|| Triple {
            at,
            others: others(at),
            units,
            column: Some(column.to_owned()),
        })
    })
}

fn withhold(table: &mut Judged<'_>, found: Triple) {
    let (r, k) = (found.at.1, table.rules.min_units);
    let name = judge::label(&table.host.keys[r]);
    let [p, q] = &found.others;
    let d = found.units;
    let (en, zh) = match &found.column {
        None => (
            format!(
                "[{name}] with {p} and {q}: one of the three less the other two is {d} privacy units, fewer than {k}: adding and subtracting them would reveal those units"
            ),
            format!("[{name}] 与 {p}、{q}：三者之一减去另两者只余 {d} 个隐私单元，少于 {k}：加减即可推出这些单位"),
        ),
        Some(column) => (
            format!(
                "[{name}] with {p} and {q}: one of the three less the other two is {d} privacy units whose {column} a few of them dominate: adding and subtracting them would reveal those units"
            ),
            format!(
                "[{name}] 与 {p}、{q}：三者之一减去另两者为 {d} 个隐私单元，其 {column} 由少数单位支配：加减即可推出这些单位"
            ),
        ),
    };
    table.verdicts[r] = table.verdicts[r].max(Verdict::Suppressed);
    table.suppressed[r] = true;
    table.findings.push(CellFinding {
        row: Some(r),
        column: None,
        rule: Rule::Differencing,
        verdict: Verdict::Suppressed,
        en,
        zh,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::differencing::UnitHasher;

    fn cell(label: &str, units: std::ops::Range<u32>) -> ReleasedCell {
        let hasher = UnitHasher::new(&[9; 32]);
        let mut sketch = Sketch::default();
        for u in units {
            sketch.insert(&hasher, format!("u{u}").as_bytes());
        }
        ReleasedCell {
            dataset: "shops".to_owned(),
            label: label.to_owned(),
            sketch,
            contributions: Vec::new(),
            magnitudes: Vec::new(),
        }
    }

    #[test]
    fn a_cell_released_again_is_one_entry_of_the_index() {
        // One module's table released five times over the same rows, and once over others.
        let mut earlier: Vec<ReleasedCell> = (0..5).map(|_| cell("m streets [H, S01]", 0..10)).collect();
        earlier.push(cell("m streets [H, S01]", 0..11));
        earlier.push(cell("n zones [H]", 0..10));
        let this_run = vec![(0, 3, cell("n zones [H]", 0..10))];
        let index = Index::new(&earlier, &this_run);
        assert_eq!(index.by_label["m streets [H, S01]"].len(), 2);
        // This run's cell released before with the same units: one entry, this run's.
        assert_eq!(index.by_label["n zones [H]"].len(), 1);
        assert_eq!(index.by_label["n zones [H]"][0].at, Some((0, 3)));
        assert_eq!(index.by_size[&("shops", 10)].len(), 1, "one per distinct units");
        assert_eq!(index.by_size[&("shops", 11)].len(), 1);
    }
}
