//! Client ids in logs and error bodies are shown the way upstream shows them:
//! first 4 characters, `##### REDACTED #####`, last 4 characters.

/// Redacts a client id (ids of 8 characters or fewer are fully hidden).
pub fn client_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return "##### REDACTED #####".to_string();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}##### REDACTED #####{tail}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_four_characters_each_side() {
        assert_eq!(super::client_id("00000000-1111-2222-3333-444455556666"), "0000##### REDACTED #####6666");
    }

    #[test]
    fn short_ids_are_hidden_entirely() {
        assert_eq!(super::client_id("abc"), "##### REDACTED #####");
    }
}
