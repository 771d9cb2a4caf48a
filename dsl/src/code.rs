//! Stable diagnostic codes. A code is never reused for another fault; each one is documented in
//! `docs/diagnostics.md` (a test keeps the two one-to-one).

use serde::Serialize;

macro_rules! codes {
    ($($variant:ident = $code:literal, $title:literal;)*) => {
        /// A stable diagnostic code (`DR0001`…). `DR0xxx` are errors in the runbook, `DR1xxx`
        /// safety lints (errors unless waived with a reason), `DR2xxx` warnings.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub enum Code {
            $(
                #[doc = $title]
                $variant,
            )*
        }

        impl Code {
            /// Every code, in numeric order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code as users see it, `DR0001`.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// A short title of the fault.
            #[must_use]
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }
        }
    };
}

codes! {
    SyntaxError = "DR0001", "syntax error";
    NestingTooDeep = "DR0002", "nesting too deep";
    UnknownAttribute = "DR0003", "unknown attribute or block";
    WrongValueKind = "DR0004", "value of the wrong kind";
    MissingAttribute = "DR0005", "missing required attribute";
    MissingHeader = "DR0006", "missing or repeated runbook header";
    InvalidMode = "DR0007", "unknown mode";
    DuplicateAttribute = "DR0008", "attribute set twice";
    DuplicateId = "DR0010", "duplicate id";
    UnknownStep = "DR0011", "unknown step";
    UnknownParameter = "DR0012", "unknown parameter";
    UnknownOutput = "DR0013", "unknown step output";
    DependencyCycle = "DR0014", "dependency cycle";
    UnknownAction = "DR0015", "unknown action";
    UnknownInput = "DR0016", "unknown input";
    MissingInput = "DR0017", "missing required input";
    InputTypeMismatch = "DR0018", "input of the wrong type";
    MissingRtoMilestone = "DR0019", "no milestone stops the RTO clock";
    UnreachableStep = "DR0020", "step can never run";
    InvalidEstimate = "DR0021", "estimate cannot be parsed";
    InvalidDuration = "DR0022", "invalid duration";
    TemplateError = "DR0023", "template error";
    InvalidVariable = "DR0024", "invalid --var";
    ImportFailed = "DR0025", "import failed";
    SecretInTemplate = "DR0026", "secret used in a template";
    UnknownType = "DR0027", "unknown parameter type";
    ParameterWithoutValue = "DR0028", "parameter has no value";
    DrillTouchesProduction = "DR0029", "drill step touches a production resource";
    InvalidRetry = "DR0030", "invalid retry policy";
    InvalidForEach = "DR0031", "invalid for_each";
    InvalidMilestone = "DR0032", "invalid milestone";
    UnknownGroup = "DR0033", "unknown step group";
    InvalidRoster = "DR0034", "invalid operator roster";
    UnknownRole = "DR0035", "approval role no operator holds";
    BreakGlassStep = "DR0036", "misplaced break-glass step";
    InvalidCron = "DR0037", "invalid cron expression";
    UnknownTimeZone = "DR0038", "unknown time zone";
    InvalidBlackout = "DR0039", "invalid blackout";
    JitterTooLarge = "DR0040", "jitter not shorter than the schedule's interval";
    InvalidSchedule = "DR0041", "invalid schedule";
    DestructiveWithoutApproval = "DR1001", "destructive step without an approval gate upstream";
    UnverifiedCutover = "DR1002", "restored data reaches a cutover without verification";
    MissingCompensate = "DR1003", "mutating step without compensate in a failback runbook";
    WaiverWithoutReason = "DR1004", "safety waiver without a reason";
    UnusedParameter = "DR2001", "unused parameter";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
