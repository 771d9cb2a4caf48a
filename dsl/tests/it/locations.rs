//! Exact line, column and width of diagnostics for a sample of faults.

use super::support::compile_text;
use drover_dsl::Code;

/// (code, line, column, width) of every diagnostic.
fn located(text: &str) -> Vec<(Code, usize, usize, usize)> {
    let c = compile_text(text);
    c.diagnostics
        .iter()
        .map(|d| {
            let f = c.sources.get(d.primary.span.file);
            let (l, col) = f.line_col(d.primary.span.start as usize);
            (d.code, l, col, d.primary.span.len())
        })
        .collect()
}

const HEAD: &str = "runbook \"t\" {\n  rto = 1h\n  rpo = 1h\n  modes = [drill]\n}\n";
const DONE: &str = "milestone m {\n  after = [a]\n  stops_rto = true\n}\n";

#[test]
fn unknown_step_points_at_the_name_in_after() {
    let src = format!(
        "{HEAD}step a {{\n  action = wait\n  after = [x, bogus]\n  with {{ duration = 1s }}\n}}\n{DONE}"
    );
    assert_eq!(
        located(&src),
        vec![(Code::UnknownStep, 8, 12, 1), (Code::UnknownStep, 8, 15, 5)]
    );
}

#[test]
fn unknown_parameter_points_inside_the_template() {
    let src = format!(
        "{HEAD}step a {{\n  action = notify\n  with {{ message = \"to {{{{ regoin }}}}\" }}\n}}\n{DONE}"
    );
    assert_eq!(located(&src), vec![(Code::UnknownParameter, 8, 27, 6)]);
}

#[test]
fn syntax_error_points_at_the_unexpected_token() {
    let src = format!("{HEAD}step a {{\n  action = [wait\n}}\n{DONE}");
    assert_eq!(located(&src), vec![(Code::SyntaxError, 8, 1, 1)]);
    let src = format!("{HEAD}step a {{\n  action = wait,\n}}\n{DONE}");
    assert_eq!(located(&src), vec![(Code::SyntaxError, 7, 16, 1)]);
}

#[test]
fn unknown_action_underlines_the_whole_name() {
    let src = format!("{HEAD}step a {{\n  action = aws_route53.nope\n}}\n{DONE}");
    assert_eq!(located(&src), vec![(Code::UnknownAction, 7, 12, 16)]);
}

#[test]
fn cycle_points_at_the_dependency_that_closes_it() {
    let src = format!(
        "{HEAD}step a {{\n  action = wait\n  after = [b]\n  with {{ duration = 1s }}\n}}\nstep b {{\n  action = wait\n  after = [a]\n  with {{ duration = 1s }}\n}}\n{DONE}"
    );
    let got = located(&src);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, Code::DependencyCycle);
    assert_eq!((got[0].1, got[0].3), (8, 1));
}

#[test]
fn columns_count_characters_not_bytes() {
    let src = format!("{HEAD}step a {{\n  description = \"café\" action = nope\n}}\n{DONE}");
    assert_eq!(located(&src), vec![(Code::UnknownAction, 7, 33, 4)]);
}

#[test]
fn findings_about_fanned_out_and_group_steps_point_at_their_definitions() {
    // The compiler releases a step's lowered form once its last instance is built; what the
    // checks point at afterwards must still be the definition's own `modes` and `when`.
    let src = format!(
        "{HEAD}group g {{\n  step inner {{\n    action = wait\n    when = \"false\"\n    with {{ duration = 1s }}\n  }}\n}}\n\
         step a {{\n  action = wait\n  with {{ duration = 1s }}\n}}\n\
         step f {{\n  action = wait\n  for_each = [\"x\", \"y\"]\n  modes = [failback]\n  with {{ duration = 1s }}\n}}\n\
         use u {{\n  group = g\n}}\n{DONE}"
    );
    assert_eq!(
        located(&src),
        vec![
            (Code::UnreachableStep, 9, 12, 7),
            (Code::UnreachableStep, 20, 11, 10),
            (Code::UnreachableStep, 20, 11, 10),
        ]
    );
}
