; Highlights for Drover runbooks (Neovim, Helix, Zed; capture names from the common set).

(comment) @comment

["import" "param" "as"] @keyword

(block kind: (identifier) @keyword)
(block label: (identifier) @function)
(block label: (string) @string.special)

(attribute key: (identifier) @property)
(attribute key: (string) @property)

(param name: (identifier) @variable.parameter)
(type name: (identifier) @type.builtin)

(import path: (string) @string.special.path)

(call function: (identifier) @function.builtin)

; `steps.ID.OUTPUT`: the first part is the keyword-like root.
(path . (identifier) @variable.builtin (#eq? @variable.builtin "steps"))
(path . (identifier) @module (#not-eq? @module "steps"))
(path "." . (identifier) @variable.member)

(string) @string
(escape_sequence) @string.escape
(template) @embedded
(template_content) @variable

(duration) @number
(number) @number
(range) @number
(boolean) @boolean

; A bare word as a value: a parameter, or a word of a fixed set (COMPLIANCE, drill).
((identifier) @constant
  (#match? @constant "^[A-Z][A-Z0-9_]*$"))

["=" ":" ","] @punctuation.delimiter
["{" "}" "[" "]" "(" ")" "<" ">"] @punctuation.bracket
".." @operator
