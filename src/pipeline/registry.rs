//! Every component kind the engine knows, gathered from the `COMPONENTS`
//! list of each folder (`sources`, `transforms`, `sinks`). Adding a kind is one
//! new file plus one line in its folder's `mod.rs`.

use super::component::ComponentDescriptor;

/// All registered component kinds.
pub fn all() -> impl Iterator<Item = &'static ComponentDescriptor> {
    crate::sources::COMPONENTS
        .iter()
        .chain(crate::transforms::COMPONENTS)
        .chain(crate::sinks::COMPONENTS)
}

/// The kind registered under `type_name`.
pub fn lookup(type_name: &str) -> Option<&'static ComponentDescriptor> {
    all().find(|d| d.type_name == type_name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn type_names_are_unique() {
        let mut names: Vec<_> = super::all().map(|d| d.type_name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
