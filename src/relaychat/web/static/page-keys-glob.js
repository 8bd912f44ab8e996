// A key's allowed conversations, matched as the server matches them: Python's
// `fnmatch.fnmatchcase` (domain/access/keys.py, check_conversation). The preview must say
// what the server will do, so this follows `fnmatch.translate` step by step, quirks included
// (`[z-a]` matches nothing, `[a--z]` only "z", `[` without `]` is itself, `!` negates a set
// and `^` does not), and then reads the set as Python's `re` reads it.

/** A pattern the server could not read: its `re` would raise, and the request fail. */
export class GlobError extends Error {}

// What a set holds while it is being built: a character as written, or one escaped with a
// backslash (always a literal for `re`; only raw `-`, `]` and a leading `^` mean anything).
const raw = (ch) => ({ ch, escaped: false });
const escaped = (ch) => ({ ch, escaped: true });
const code = (ch) => ch.codePointAt(0);

/**
 * The pattern as tokens: `{ kind: "star" }`, `{ kind: "one", test(ch) }` (one character
 * that `test` accepts). Throws GlobError where Python's `re` would refuse the pattern.
 */
export function compile(pattern) {
  // Code points, as Python indexes and compares them (not UTF-16 units).
  const pat = Array.from(pattern);
  const n = pat.length;
  const tokens = [];
  let i = 0;
  while (i < n) {
    const c = pat[i];
    i += 1;
    if (c === "*") {
      if (tokens.at(-1)?.kind !== "star") tokens.push({ kind: "star" });
    } else if (c === "?") {
      tokens.push({ kind: "one", test: () => true });
    } else if (c === "[") {
      let j = i;
      if (j < n && pat[j] === "!") j += 1;
      if (j < n && pat[j] === "]") j += 1;
      while (j < n && pat[j] !== "]") j += 1;
      if (j >= n) {
        tokens.push(literal("["));
        continue;
      }
      tokens.push(bracket(pat, i, j));
      i = j + 1;
    } else {
      tokens.push(literal(c));
    }
  }
  return tokens;
}

function literal(ch) {
  return { kind: "one", test: (other) => other === ch };
}

/** `pat[i:j]`, the inside of `[...]`, as translate turns it into a regex set, then read. */
function bracket(pat, i, j) {
  let stuff;
  if (!pat.slice(i, j).includes("-")) {
    stuff = pat.slice(i, j).map((ch) => (ch === "\\" ? escaped(ch) : raw(ch)));
  } else {
    // Hyphens split the set into chunks; the one after a `!`, and the first of a chunk,
    // are not range separators (translate searches from i+2 and then k+3).
    const chunks = [];
    let k = pat[i] === "!" ? i + 2 : i + 1;
    for (;;) {
      k = indexOf(pat, "-", k, j);
      if (k < 0) break;
      chunks.push(pat.slice(i, k));
      i = k + 1;
      k += 3;
    }
    const chunk = pat.slice(i, j);
    if (chunk.length) chunks.push(chunk);
    else chunks[chunks.length - 1] = [...chunks.at(-1), "-"];
    // A reversed range is dropped together with its two ends.
    for (let m = chunks.length - 1; m > 0; m -= 1) {
      if (code(chunks[m - 1].at(-1)) > code(chunks[m][0])) {
        chunks[m - 1] = [...chunks[m - 1].slice(0, -1), ...chunks[m].slice(1)];
        chunks.splice(m, 1);
      }
    }
    stuff = [];
    chunks.forEach((part, index) => {
      if (index) stuff.push(raw("-"));
      for (const ch of part) stuff.push(ch === "\\" || ch === "-" ? escaped(ch) : raw(ch));
    });
  }
  // Python escapes the set operations it might one day read (`&&`, `~~`, `||`).
  stuff = stuff.map((atom) => (!atom.escaped && "&~|".includes(atom.ch) ? escaped(atom.ch) : atom));
  if (!stuff.length) return { kind: "one", test: () => false };
  if (stuff.length === 1 && !stuff[0].escaped && stuff[0].ch === "!") return { kind: "one", test: () => true };
  const negate = !stuff[0].escaped && stuff[0].ch === "!";
  // Without `!`, translate escapes a leading `^` or `[`: both are then plain characters.
  const [first, ...rest] = stuff;
  const body = negate ? rest : [!first.escaped && "^[".includes(first.ch) ? escaped(first.ch) : first, ...rest];
  const set = readSet(body);
  return { kind: "one", test: (ch) => set(code(ch)) !== negate };
}

function indexOf(list, value, from, to) {
  for (let index = from; index < to; index += 1) if (list[index] === value) return index;
  return -1;
}

/** Python's `re` reading the inside of a set (after its `^`), closed by the `]` translate adds. */
function readSet(atoms) {
  const source = [...atoms, raw("]")];
  const singles = new Set();
  const ranges = [];
  let at = 0;
  let empty = true;
  for (;;) {
    const current = source[at++];
    if (current === undefined) throw new GlobError("unterminated character set");
    // `]` first in a set is a character, anywhere else it ends the set.
    if (!current.escaped && current.ch === "]" && !empty) break;
    empty = false;
    const low = code(current.ch);
    const next = source[at];
    if (next && !next.escaped && next.ch === "-") {
      at += 1;
      const that = source[at++];
      if (that === undefined) throw new GlobError("unterminated character set");
      if (!that.escaped && that.ch === "]") {
        singles.add(low);
        singles.add(code("-"));
        break;
      }
      const high = code(that.ch);
      if (high < low) throw new GlobError(`bad character range ${current.ch}-${that.ch}`);
      ranges.push([low, high]);
    } else {
      singles.add(low);
    }
  }
  return (point) => singles.has(point) || ranges.some(([low, high]) => low <= point && point <= high);
}

/** Whether `name` matches the whole of `pattern`, case-sensitively, as `fnmatchcase`. */
export function globMatches(pattern, name) {
  return matchTokens(compile(pattern), Array.from(name));
}

function matchTokens(tokens, chars) {
  // Every token but `*` takes one character, so the classic backtrack to the last `*`
  // finds a match whenever one exists (what the atomic groups of translate rely on too).
  let t = 0;
  let s = 0;
  let star = -1;
  let resume = 0;
  while (s < chars.length) {
    const token = tokens[t];
    if (token?.kind === "star") {
      star = t;
      resume = s;
      t += 1;
    } else if (token && token.test(chars[s])) {
      t += 1;
      s += 1;
    } else if (star >= 0) {
      t = star + 1;
      resume += 1;
      s = resume;
    } else {
      return false;
    }
  }
  while (tokens[t]?.kind === "star") t += 1;
  return t === tokens.length;
}

// The server's rule for a conversation id (domain/messaging/conversation_ids.py, ID_PATTERN):
// an id it refuses never reaches the patterns.
const CONVERSATION_ID = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$/;

/** Whether the server accepts `id` as a conversation id at all. */
export function validConversationId(id) {
  return CONVERSATION_ID.test(id);
}
