/**
 * Tree-sitter grammar for Drover runbooks (`*.drover`), for Neovim, Helix, Zed and GitHub.
 *
 * It follows the compiler's grammar (dsl/src/grammar.pest): a file is a sequence of items —
 * imports, parameter declarations, attributes (`key = value`) and blocks
 * (`kind label... { items }`). Which blocks and attributes mean something is the compiler's
 * business, as in the pest grammar; this grammar gives editors the structure, and `{{ }}`
 * templates inside strings as nodes of their own.
 */

const IDENT = /[A-Za-z_][A-Za-z0-9_]*/;

function commaSep(rule) {
  return optional(seq(rule, repeat(seq(',', rule)), optional(',')));
}

module.exports = grammar({
  name: 'drover',

  extras: $ => [/\s/, $.comment],

  word: $ => $.identifier,

  rules: {
    source_file: $ => repeat($._item),

    _item: $ => choice($.import, $.param, $.attribute, $.block),

    comment: _ => token(seq('#', /[^\n]*/)),

    import: $ => seq(
      'import',
      field('path', $.string),
      optional(seq('as', field('alias', $.identifier))),
    ),

    param: $ => seq(
      'param',
      field('name', $.identifier),
      ':',
      field('type', $.type),
      optional(seq('=', field('default', $._value))),
    ),

    type: $ => seq(
      field('name', $.identifier),
      optional(seq('<', field('argument', $.type), '>')),
    ),

    attribute: $ => seq(
      field('key', choice($.identifier, $.string)),
      '=',
      field('value', $._value),
    ),

    block: $ => seq(
      field('kind', $.identifier),
      repeat(field('label', choice($.identifier, $.string))),
      field('body', $.block_body),
    ),

    block_body: $ => seq('{', repeat($._item), '}'),

    _value: $ => choice(
      $.string,
      $.list,
      $.map,
      $.range,
      $.duration,
      $.number,
      $.boolean,
      $.call,
      $.path,
      $.identifier,
    ),

    range: $ => seq(field('low', $.duration), '..', field('high', $.duration)),

    duration: _ => token(/(\d+(ms|s|m|h|d))+/),

    number: _ => token(/-?\d+(\.\d+)?/),

    boolean: _ => choice('true', 'false'),

    list: $ => seq('[', commaSep($._value), ']'),

    map: $ => seq('{', repeat(seq($.attribute, optional(','))), '}'),

    call: $ => seq(
      field('function', $.identifier),
      '(',
      commaSep($._value),
      ')',
    ),

    // A dotted name: an action (`backup.verify`), a step output (`steps.restore.path`).
    path: $ => seq(
      $.identifier,
      repeat1(seq(token.immediate('.'), alias(token.immediate(IDENT), $.identifier))),
    ),

    string: $ => seq(
      '"',
      repeat(choice(
        $.string_content,
        $.escape_sequence,
        $.template,
      )),
      token.immediate('"'),
    ),

    string_content: _ => choice(
      token.immediate(prec(1, /[^"\\{\n]+/)),
      token.immediate('{'),
    ),

    escape_sequence: _ => token.immediate(/\\./),

    // `{{ expression }}` or `{% statement %}` (minijinja), kept as one node.
    template: $ => seq(
      field('open', alias(token.immediate(choice('{{', '{%')), '{{')),
      optional(alias(token.immediate(/([^}%"\\\n]|\\.|\}[^}"\\\n]|%[^}"\\\n])+/), $.template_content)),
      field('close', alias(token.immediate(choice('}}', '%}')), '}}')),
    ),

    identifier: _ => IDENT,
  },
});
