//! MIME types: `xps_mime.c`, new in stage 12. A file's type, as a web
//! server would name it in a `Content-Type` header, looked up from its
//! extension. Nothing reads it before HTTP (stage 14); the file module
//! already records it.

use crate::utils::xps_utils::get_file_ext;

// ANCHOR: mime_types
/// The course's table, in its order: the first entry whose extension
/// matches wins. (The course lists `.png` twice, the second time as
/// `image/x-png`, which first-match lookup never reaches; it is left out.
/// Stage 14 needs `.jpg` and `.pdf`, which the table gains then.)
const MIME_TYPES: &[(&str, &str)] = &[
    (".h", "text/x-c"),
    (".c", "text/x-c"),
    (".cc", "text/x-c"),
    (".cpp", "text/x-c"),
    (".dir", "application/x-director"),
    (".dxr", "application/x-director"),
    (".fgd", "application/x-director"),
    (".swa", "application/x-director"),
    (".text", "text/plain"),
    (".txt", "text/plain"),
    (".png", "image/png"),
];
// ANCHOR_END: mime_types

// ANCHOR: xps_get_mime
/// `xps_get_mime()`: the MIME type of `file_path`, from its extension
/// (case matters, as in C's `strcmp`), or `None` if it has none or the
/// table does not know it. The type is `'static`: it points into the
/// table, as the C one points into its static array.
pub fn xps_get_mime(file_path: &str) -> Option<&'static str> {
    let ext = get_file_ext(file_path)?;
    MIME_TYPES.iter().find(|(known, _)| *known == ext).map(|&(_, mime)| mime)
}
// ANCHOR_END: xps_get_mime

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_extensions_have_their_type() {
        assert_eq!(xps_get_mime("public/sample.txt"), Some("text/plain"));
        assert_eq!(xps_get_mime("notes.text"), Some("text/plain"));
        assert_eq!(xps_get_mime("main.c"), Some("text/x-c"));
        assert_eq!(xps_get_mime("main.cpp"), Some("text/x-c"));
        assert_eq!(xps_get_mime("movie.dxr"), Some("application/x-director"));
        assert_eq!(xps_get_mime("logo.png"), Some("image/png"));
    }

    #[test]
    fn no_extension_or_an_unknown_one_has_none() {
        assert_eq!(xps_get_mime("README"), None);
        assert_eq!(xps_get_mime("archive.tar.gz"), None);
        // The comparison is exact: case counts, and ".c" is not ".cc".
        assert_eq!(xps_get_mime("LOGO.PNG"), None);
        // A dot in a folder's name is not an extension.
        assert_eq!(xps_get_mime("v1.2/README"), None);
    }
}
