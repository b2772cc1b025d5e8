// What the bundled CLI gives yargs and cliui for `string-width`. The real one builds an emoji
// regex (`\p{RGI_Emoji}`, flag v) and an Intl.Segmenter when it loads: about 20 ms of every
// command's start-up, for help text that is plain ASCII here. This one strips ANSI escapes and
// counts code points: combining marks as 0, East Asian wide and fullwidth ranges as 2.
const ANSI = /[\u001B\u009B][[\]()#;?]*(?:(?:(?:;[-a-zA-Z\d/#&.:=?%@~_]+)*|[a-zA-Z\d]+(?:;[-a-zA-Z\d/#&.:=?%@~_]*)*)?\u0007|(?:\d{1,4}(?:;\d{0,4})*)?[\dA-PR-TZcf-ntqry=><~])/g;
const ZERO = /[\u0300-\u036F\u200B-\u200F\uFE00-\uFE0F]/;

function wide(cp) {
  return (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1faff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  );
}

// Printable ASCII only, the common case (yargs measures every word of the help it renders).
const PLAIN = /^[\x20-\x7e]*$/;

export default function stringWidth(text) {
  if (typeof text !== 'string' || text.length === 0) return 0;
  if (PLAIN.test(text)) return text.length;
  let width = 0;
  for (const ch of text.replace(ANSI, '')) {
    const cp = ch.codePointAt(0) ?? 0;
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || ZERO.test(ch)) continue;
    width += wide(cp) ? 2 : 1;
  }
  return width;
}
