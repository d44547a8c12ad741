//! Example module 4, a model product: least squares of household electricity use on district and
//! month (fixed effects), returning the coefficients with n and the residual degrees of freedom.
//!
//! The module never sees a household. Ordinary least squares with categorical regressors only
//! needs, per district × month cell, the number of households and the sum of their use: the
//! normal equations X'X b = X'y are sums over cells of n·x·x' and S·x. Cells the host suppressed
//! (under the threshold) are left out, and n counts the readings (rows with a value) in the cells
//! used, as the host does when it fits the same model itself.

use std::collections::BTreeSet;
use std::sync::Arc;

use sandbox_sdk::arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use sandbox_sdk::{Analysis, Error, Params};

/// Module error code: the design matrix is singular (too few cells survived the threshold).
const SINGULAR: u32 = 1;

struct ElectricityModel;

struct Cell {
    district: String,
    month: String,
    households: i64,
    kwh: f64,
}

impl Analysis for ElectricityModel {
    fn run(params: &Params) -> Result<(), Error> {
        let year = params.integer("year")?;
        let sql = format!(
            "SELECT district, month, count(electricity_kwh) AS households, sum(electricity_kwh) AS kwh
             FROM utility_usage
             WHERE month >= '{year:04}-01' AND month <= '{year:04}-12'
             GROUP BY district, month"
        );
        let mut cells = Vec::new();
        for batch in sandbox_sdk::query(&sql)? {
            let batch = batch?;
            let districts = sandbox_sdk::strings(&batch, "district")?;
            let months = sandbox_sdk::strings(&batch, "month")?;
            let households = sandbox_sdk::integers(&batch, "households")?;
            let kwh = sandbox_sdk::numbers(&batch, "kwh")?;
            for i in 0..batch.num_rows() {
                // A NULL sum is a cell the host suppressed.
                if let (Some(d), Some(m), Some(n), Some(s)) = (&districts[i], &months[i], households[i], kwh[i]) {
                    cells.push(Cell { district: d.clone(), month: m.clone(), households: n, kwh: s });
                }
            }
        }
        if cells.is_empty() {
            return Err(Error::Host(sandbox_sdk::ErrorCode::NoData));
        }

        let districts: Vec<&str> =
            cells.iter().map(|c| c.district.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
        let months: Vec<&str> = cells.iter().map(|c| c.month.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
        // Intercept, then one dummy per level after the first of each factor.
        let mut terms = vec!["intercept".to_owned()];
        terms.extend(districts[1..].iter().map(|d| format!("district={d}")));
        terms.extend(months[1..].iter().map(|m| format!("month={m}")));
        let p = terms.len();

        let mut xtx = vec![vec![0.0; p]; p];
        let mut xty = vec![0.0; p];
        let mut n = 0i64;
        for cell in &cells {
            let mut x = vec![0usize];
            if let Some(i) = districts.iter().position(|d| *d == cell.district).filter(|&i| i > 0) {
                x.push(i);
            }
            if let Some(j) = months.iter().position(|m| *m == cell.month).filter(|&j| j > 0) {
                x.push(districts.len() + j - 1);
            }
            for &a in &x {
                xty[a] += cell.kwh;
                for &b in &x {
                    xtx[a][b] += cell.households as f64;
                }
            }
            n += cell.households;
        }
        let estimates = solve(xtx, xty).ok_or(Error::Module(SINGULAR))?;
        let residual_df = n - p as i64;

        let columns: Vec<(&str, ArrayRef)> = vec![
            ("term", Arc::new(StringArray::from(terms))),
            ("estimate", Arc::new(Float64Array::from(estimates))),
            ("n", Arc::new(Int64Array::from(vec![n; p]))),
            ("residual_df", Arc::new(Int64Array::from(vec![residual_df; p]))),
        ];
        sandbox_sdk::emit("coefficients", &[sandbox_sdk::batch(columns)?])
    }
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting; `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let p = b.len();
    for col in 0..p {
        let pivot = (col..p).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..p {
            let factor = a[row][col] / a[col][col];
            let (above, below) = a.split_at_mut(row);
            for (x, pivot_x) in below[0][col..].iter_mut().zip(&above[col][col..]) {
                *x -= factor * pivot_x;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; p];
    for row in (0..p).rev() {
        let rest: f64 = (row + 1..p).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - rest) / a[row][row];
    }
    Some(x)
}

sandbox_sdk::analysis!(ElectricityModel);
