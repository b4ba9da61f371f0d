# Flatten JSON to "path=value" lines (busybox awk): {"a": {"b": [1, "x"]}} gives
# a.b.0=1 and a.b.1=x. Strings are unescaped (\uXXXX becomes "?", newlines become spaces).
function ws() {
    while (i <= n && index(" \t\r\n", substr(s, i, 1))) i++
}
function str(    out, c, e) {
    i++
    out = ""
    while (i <= n) {
        c = substr(s, i, 1)
        if (c == "\\") {
            e = substr(s, i + 1, 1)
            if (e == "n" || e == "r" || e == "t") out = out " "
            else if (e == "u") { out = out "?"; i += 4 }
            else if (e == "b" || e == "f") out = out ""
            else out = out e
            i += 2
            continue
        }
        if (c == "\"") { i++; return out }
        out = out c
        i++
    }
    return out
}
function key(path, k) {
    return path == "" ? k : path "." k
}
function value(path,    c, k, idx, start) {
    ws()
    c = substr(s, i, 1)
    if (c == "{") {
        i++; ws()
        if (substr(s, i, 1) == "}") { i++; return }
        while (i <= n) {
            ws(); k = str(); ws(); i++  # the colon
            value(key(path, k)); ws()
            c = substr(s, i, 1); i++
            if (c != ",") return
        }
    } else if (c == "[") {
        i++; ws(); idx = 0
        if (substr(s, i, 1) == "]") { i++; return }
        while (i <= n) {
            value(key(path, idx)); idx++; ws()
            c = substr(s, i, 1); i++
            if (c != ",") return
        }
    } else if (c == "\"") {
        print path "=" str()
    } else {
        start = i
        while (i <= n && !index(",}] \t\r\n", substr(s, i, 1))) i++
        print path "=" substr(s, start, i - start)
    }
}
{ s = s $0 "\n" }
END { n = length(s); i = 1; value("") }
