//! The models the host fits itself, so that a model table's every released number is the
//! host's: ordinary least squares and logistic regression on categorical terms (an intercept and
//! one indicator per level of each term column after its first, in label order), from the
//! cross-tabulation of the term columns' levels that one aggregate pass gives
//! ([`Evidence::model`](crate::evidence::Evidence::model)).
//!
//! With categorical terms those sums are sufficient: X'X is the observations per cross cell,
//! X'y the response's sum, and the residual sum of squares follows from the sums of squares.
//! The normal equations are p × p with p the number of terms (tens, at most a few hundred), so
//! a Cholesky factorization written here does; the fits are cross-checked against statsmodels
//! in the tests. Nothing here sees a row.

use crate::evidence::CrossCell;

/// A fitted model: per term, the coefficient and its standard error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fit {
    /// `intercept`, then `column=level`.
    pub(crate) terms: Vec<String>,
    pub(crate) coefficients: Vec<f64>,
    /// `None` when the residual degrees of freedom leave no variance estimate.
    pub(crate) std_errors: Vec<Option<f64>>,
    /// The standard errors as they may leave: computed from the combinations' observations
    /// rounded to the base, so that their ratios give back only rounded counts (two levels'
    /// errors in a one-term model stand in the ratio of their exact n otherwise).
    pub(crate) released_std_errors: Vec<Option<f64>>,
    /// Observations.
    pub(crate) n: u64,
    pub(crate) residual_df: i64,
}

/// Why a model cannot be fitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FitProblem {
    /// No observations are left.
    Empty,
    /// The terms are linearly dependent (a level never occurs with another's reference).
    Singular,
    /// A logistic model's response is not 0/1 in this many observations.
    NotBinary(u64),
    /// A level's observations all have the same 0/1 response: its coefficient is infinite, and
    /// the level's share would be 0% or 100%.
    Separation(String),
    /// The iterations did not converge.
    NoConvergence,
}

impl FitProblem {
    pub(crate) fn en(&self) -> String {
        match self {
            FitProblem::Empty => "no observations are left to fit the model".to_owned(),
            FitProblem::Singular => "the model's terms are linearly dependent: it has no unique fit".to_owned(),
            FitProblem::NotBinary(n) => format!("a logistic model needs a 0/1 response; {n} responses are neither"),
            FitProblem::Separation(term) => {
                format!("every observation at {term} has the same response: the fit diverges (separation)")
            }
            FitProblem::NoConvergence => "the fit did not converge".to_owned(),
        }
    }

    pub(crate) fn zh(&self) -> String {
        match self {
            FitProblem::Empty => "没有可用于拟合模型的观测".to_owned(),
            FitProblem::Singular => "模型项线性相关，没有唯一解".to_owned(),
            FitProblem::NotBinary(n) => format!("逻辑回归的响应变量必须为 0/1，有 {n} 个观测不是"),
            FitProblem::Separation(term) => format!("{term} 的所有观测响应相同，拟合发散（完全分离）"),
            FitProblem::NoConvergence => "拟合未收敛".to_owned(),
        }
    }
}

/// The columns of the design: the intercept and each term column's levels after its first.
#[derive(Debug)]
pub(crate) struct Design {
    pub(crate) terms: Vec<String>,
    /// Per term column: its levels in label order (the first is the reference).
    pub(crate) levels: Vec<Vec<String>>,
}

impl Design {
    /// `columns` are the term columns' bare names, in the order of the cells' levels.
    pub(crate) fn new(cells: &[CrossCell], columns: &[String]) -> Design {
        let mut levels: Vec<Vec<String>> = vec![Vec::new(); columns.len()];
        for cell in cells {
            for (i, level) in cell.levels.iter().enumerate() {
                if let Err(at) = levels[i].binary_search(level) {
                    levels[i].insert(at, level.clone());
                }
            }
        }
        let mut terms = vec!["intercept".to_owned()];
        for (column, levels) in columns.iter().zip(&levels) {
            terms.extend(levels.iter().skip(1).map(|l| format!("{column}={l}")));
        }
        Design { terms, levels }
    }

    /// The design columns that are 1 for a cell: the intercept and its non-reference levels.
    fn ones(&self, cell: &CrossCell) -> Vec<usize> {
        let mut ones = vec![0];
        let mut offset = 1;
        for (i, level) in cell.levels.iter().enumerate() {
            let at = self.levels[i].binary_search(level).unwrap_or(0);
            if at > 0 {
                ones.push(offset + at - 1);
            }
            offset += self.levels[i].len().saturating_sub(1);
        }
        ones
    }
}

/// `n` to the nearest multiple of `base` (halves up), at least `base`.
fn rounded(n: u64, base: u64) -> f64 {
    let base = base.max(1);
    (n.saturating_add(base / 2) / base * base).max(base) as f64
}

/// Ordinary least squares; `base` rounds the observations the released errors rest on.
pub(crate) fn ols(cells: &[CrossCell], columns: &[String], base: u64) -> Result<Fit, FitProblem> {
    let design = Design::new(cells, columns);
    let p = design.terms.len();
    let n: u64 = cells.iter().map(|c| c.n).sum();
    if n == 0 {
        return Err(FitProblem::Empty);
    }
    let mut xtx = vec![vec![0.0; p]; p];
    let mut xty = vec![0.0; p];
    let ones: Vec<Vec<usize>> = cells.iter().map(|c| design.ones(c)).collect();
    for (cell, ones) in cells.iter().zip(&ones) {
        for &a in ones {
            xty[a] += cell.sum_y;
            for &b in ones {
                xtx[a][b] += cell.n as f64;
            }
        }
    }
    let l = cholesky(&xtx).ok_or(FitProblem::Singular)?;
    let b = solve(&l, &xty);
    // Each cell's residuals from its fitted value: within-cell spread plus the cell mean's miss.
    let rss: f64 = cells
        .iter()
        .zip(&ones)
        .map(|(cell, ones)| {
            let fitted: f64 = ones.iter().map(|&a| b[a]).sum();
            cell.sum_yy - 2.0 * fitted * cell.sum_y + cell.n as f64 * fitted * fitted
        })
        .sum::<f64>()
        .max(0.0);
    let residual_df = n as i64 - p as i64;
    let errors = |counts: &dyn Fn(&CrossCell) -> f64, df: i64| -> Result<Vec<Option<f64>>, FitProblem> {
        let mut xtx = vec![vec![0.0; p]; p];
        for (cell, ones) in cells.iter().zip(&ones) {
            for &a in ones {
                for &c in ones {
                    xtx[a][c] += counts(cell);
                }
            }
        }
        let inverse = inverse(&cholesky(&xtx).ok_or(FitProblem::Singular)?);
        Ok((0..p).map(|a| (df > 0).then(|| (rss / df as f64 * inverse[a][a]).max(0.0).sqrt())).collect())
    };
    let std_errors = errors(&|c| c.n as f64, residual_df)?;
    let released_df = (cells.iter().map(|c| rounded(c.n, base)).sum::<f64>() as i64) - p as i64;
    let released_std_errors = errors(&|c| rounded(c.n, base), released_df)?;
    Ok(Fit { terms: design.terms, coefficients: b, std_errors, released_std_errors, n, residual_df })
}

/// Logistic regression of a 0/1 response: iteratively reweighted least squares on the cross
/// cells as binomial observations (n trials, the response's sum successes); `base` rounds the
/// observations the released errors rest on.
pub(crate) fn logistic(cells: &[CrossCell], columns: &[String], base: u64) -> Result<Fit, FitProblem> {
    let non_binary: u64 = cells.iter().map(|c| c.non_binary).sum();
    if non_binary > 0 {
        return Err(FitProblem::NotBinary(non_binary));
    }
    let design = Design::new(cells, columns);
    let p = design.terms.len();
    let n: u64 = cells.iter().map(|c| c.n).sum();
    if n == 0 {
        return Err(FitProblem::Empty);
    }
    // A level (or the whole table) whose observations all answer alike has no finite fit.
    let ones: Vec<Vec<usize>> = cells.iter().map(|c| design.ones(c)).collect();
    for (t, term) in design.terms.iter().enumerate() {
        let (trials, successes) = cells
            .iter()
            .zip(&ones)
            .filter(|(_, ones)| ones.contains(&t))
            .fold((0.0, 0.0), |(n, s), (c, _)| (n + c.n as f64, s + c.sum_y));
        if trials > 0.0 && (successes == 0.0 || successes == trials) {
            return Err(FitProblem::Separation(term.clone()));
        }
    }
    let mut b = vec![0.0; p];
    for _ in 0..100 {
        let mut xtwx = vec![vec![0.0; p]; p];
        let mut xtwz = vec![0.0; p];
        for (cell, ones) in cells.iter().zip(&ones) {
            let eta: f64 = ones.iter().map(|&a| b[a]).sum();
            let mu = 1.0 / (1.0 + (-eta).exp());
            let w = cell.n as f64 * mu * (1.0 - mu);
            if w <= 0.0 || !w.is_finite() {
                return Err(FitProblem::NoConvergence);
            }
            let z = eta + (cell.sum_y - cell.n as f64 * mu) / w;
            for &a in ones {
                xtwz[a] += w * z;
                for &c in ones {
                    xtwx[a][c] += w;
                }
            }
        }
        let l = cholesky(&xtwx).ok_or(FitProblem::Singular)?;
        let next = solve(&l, &xtwz);
        let step = next.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        let scale = 1.0 + next.iter().map(|x| x.abs()).fold(0.0, f64::max);
        b = next;
        if step <= 1e-12 * scale {
            // The covariance at the fit: the inverse of X'WX with the final weights.
            let errors = |counts: &dyn Fn(&CrossCell) -> f64| -> Result<Vec<Option<f64>>, FitProblem> {
                let mut xtwx = vec![vec![0.0; p]; p];
                for (cell, ones) in cells.iter().zip(&ones) {
                    let eta: f64 = ones.iter().map(|&a| b[a]).sum();
                    let mu = 1.0 / (1.0 + (-eta).exp());
                    let w = counts(cell) * mu * (1.0 - mu);
                    for &a in ones {
                        for &c in ones {
                            xtwx[a][c] += w;
                        }
                    }
                }
                let inverse = inverse(&cholesky(&xtwx).ok_or(FitProblem::Singular)?);
                Ok((0..p).map(|a| Some(inverse[a][a].max(0.0).sqrt())).collect())
            };
            let std_errors = errors(&|c| c.n as f64)?;
            let released_std_errors = errors(&|c| rounded(c.n, base))?;
            let residual_df = n as i64 - p as i64;
            return Ok(Fit { terms: design.terms, coefficients: b, std_errors, released_std_errors, n, residual_df });
        }
    }
    Err(FitProblem::NoConvergence)
}

/// The lower Cholesky factor of a symmetric positive definite matrix; `None` when it is not
/// (numerically) positive definite.
fn cholesky(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let p = a.len();
    let scale = (0..p).map(|i| a[i][i].abs()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let mut l = vec![vec![0.0; p]; p];
    for i in 0..p {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - dot;
                if d <= 1e-10 * scale {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - dot) / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves L L' x = b.
fn solve(l: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let p = b.len();
    let mut y = vec![0.0; p];
    for i in 0..p {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        x[i] = (y[i] - (i + 1..p).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

/// (L L')⁻¹, column by column.
fn inverse(l: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let p = l.len();
    // The inverse is symmetric: each solved column is also a row.
    (0..p)
        .map(|j| {
            let unit: Vec<f64> = (0..p).map(|i| if i == j { 1.0 } else { 0.0 }).collect();
            solve(l, &unit)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(levels: &[&str], ys: &[f64]) -> CrossCell {
        CrossCell {
            levels: levels.iter().map(|l| l.to_string()).collect(),
            n: ys.len() as u64,
            sum_y: ys.iter().sum(),
            sum_yy: ys.iter().map(|y| y * y).sum(),
            non_binary: ys.iter().filter(|&&y| y != 0.0 && y != 1.0).count() as u64,
            everyone: ys.len() as u64,
        }
    }

    #[test]
    fn one_factor_least_squares_gives_group_means_and_their_differences() {
        // Means 2 and 5: intercept 2, effect 3; residuals ±1 in each group, RSS 4 on 4 − 2 df.
        let cells = [cell(&["a"], &[1.0, 3.0]), cell(&["b"], &[4.0, 6.0])];
        let fit = ols(&cells, &["g".to_owned()], 1).unwrap();
        assert_eq!(fit.terms, ["intercept", "g=b"]);
        assert!((fit.coefficients[0] - 2.0).abs() < 1e-12 && (fit.coefficients[1] - 3.0).abs() < 1e-12);
        assert_eq!((fit.n, fit.residual_df), (4, 2));
        // σ² = 2; se(intercept) = sqrt(2 / 2) = 1; se(effect) = sqrt(2 (1/2 + 1/2)) = sqrt(2).
        let se: Vec<f64> = fit.std_errors.iter().map(|s| s.unwrap()).collect();
        assert!((se[0] - 1.0).abs() < 1e-12 && (se[1] - 2f64.sqrt()).abs() < 1e-12, "{se:?}");
    }

    #[test]
    fn released_errors_rest_on_rounded_counts() {
        // Levels of 12 and 18 observations: the released errors stand in the ratio of 10 and 20.
        let cells = [cell(&["a"], &[1.0; 12].map(|_| 1.0)), cell(&["b"], &[2.0; 18])];
        let mut cells = cells.to_vec();
        cells[0].sum_yy += 3.0; // some spread, so the variance is not zero
        let fit = ols(&cells, &["g".to_owned()], 5).unwrap();
        let (int, b) = (fit.released_std_errors[0].unwrap(), fit.released_std_errors[1].unwrap());
        // se(intercept)² = σ²/n_a, se(b)² = σ²(1/n_a + 1/n_b): with n_a = 10, n_b = 20, 1.5.
        assert!(((b / int).powi(2) - 1.5).abs() < 1e-12, "{}", (b / int).powi(2));
        let (int, b) = (fit.std_errors[0].unwrap(), fit.std_errors[1].unwrap());
        assert!(((b / int).powi(2) - (1.0 + 12.0 / 18.0)).abs() < 1e-12);
    }

    #[test]
    fn dependent_terms_are_singular_and_a_constant_response_separates() {
        // Two factors that always move together: district b is exactly month 2.
        let cells = [cell(&["a", "1"], &[1.0, 2.0]), cell(&["b", "2"], &[3.0, 5.0])];
        assert_eq!(ols(&cells, &["d".to_owned(), "m".to_owned()], 1), Err(FitProblem::Singular));
        let cells = [cell(&["a"], &[0.0, 1.0, 1.0]), cell(&["b"], &[1.0, 1.0])];
        assert_eq!(logistic(&cells, &["g".to_owned()], 1), Err(FitProblem::Separation("g=b".to_owned())));
        let cells = [cell(&["a"], &[0.0, 2.0])];
        assert_eq!(logistic(&cells, &["g".to_owned()], 1), Err(FitProblem::NotBinary(1)));
    }

    #[test]
    fn logistic_regression_on_one_factor_gives_log_odds() {
        // Group a: 1 of 4 (odds 1/3); group b: 3 of 4 (odds 3): intercept ln(1/3), effect ln 9.
        let cells = [cell(&["a"], &[1.0, 0.0, 0.0, 0.0]), cell(&["b"], &[1.0, 1.0, 1.0, 0.0])];
        let fit = logistic(&cells, &["g".to_owned()], 1).unwrap();
        assert!((fit.coefficients[0] - (1.0f64 / 3.0).ln()).abs() < 1e-9, "{fit:?}");
        assert!((fit.coefficients[1] - 9f64.ln()).abs() < 1e-9, "{fit:?}");
        // se(intercept)² = 1/(n p (1 − p)) = 1/(4 · 1/4 · 3/4) = 4/3.
        assert!((fit.std_errors[0].unwrap() - (4.0f64 / 3.0).sqrt()).abs() < 1e-9);
    }
}
