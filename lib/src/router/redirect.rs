//! Where a redirect frontend that also rewrites sends a request: Sōzu's redirect, the
//! request's hostname and path with the frontend's `rewrite_host`, `rewrite_port` and
//! `rewrite_path` in their place. The answer itself is the frontend's `redirect_template`, or
//! the listener's page for the redirect status.

use super::{RouteMatch, host};

impl RouteMatch<'_> {
    /// `host[:port]path` of the redirect, or `None` when the frontend rewrites nothing (the
    /// caller then redirects to the request's own host and path). Without `rewrite_port`, the
    /// location carries no port: the request's port belonged to the request's host and scheme.
    /// Arguments as for [`RouteMatch::rewrite`].
    pub fn rewritten_redirect(
        &self,
        request_host: &[u8],
        target: &[u8],
        listener_port: u16,
    ) -> Option<String> {
        let rewrite = self.rewrite(request_host, target, listener_port)?;
        let hostname = rewrite
            .host
            .unwrap_or_else(|| host::normalize(request_host).to_vec());
        let path = match rewrite.path {
            Some(path) => path,
            None if target.starts_with(b"/") => target.to_vec(),
            None => b"/".to_vec(),
        };
        let port = rewrite
            .port
            .map(|port| format!(":{port}"))
            .unwrap_or_default();
        Some(format!(
            "{}{port}{}",
            String::from_utf8_lossy(&hostname),
            String::from_utf8_lossy(&path)
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use sozu_command_lib::request::{HttpFrontend, RedirectPolicy, RedirectScheme};

    use crate::router::Router;

    fn redirect(hostname: &str) -> HttpFrontend {
        let address: SocketAddr = "127.0.0.1:80".parse().expect("an address");
        let mut frontend = HttpFrontend::new(None, address, hostname);
        frontend.redirect = RedirectPolicy::Permanent;
        frontend.redirect_scheme = RedirectScheme::UseHttps;
        frontend
    }

    fn location(frontend: HttpFrontend, host: &[u8], target: &[u8]) -> Option<String> {
        let mut router = Router::new();
        router.add(frontend).expect("a valid frontend");
        let found = router.lookup(host, target, b"GET").expect("a route");
        found.rewritten_redirect(host, target, 80)
    }

    /// Issue 11: `rewrite_host = "www.test", rewrite_port = 443` on a redirect answered
    /// `Location: https://old.test:80/…`.
    #[test]
    fn redirect_takes_the_rewritten_host_and_port() {
        let mut frontend = redirect("old.test");
        frontend.rewrite_host = Some("www.test".to_string());
        frontend.rewrite_port = Some(443);
        assert_eq!(
            location(frontend, b"old.test:80", b"/a/b?c=1").as_deref(),
            Some("www.test:443/a/b?c=1")
        );
    }

    #[test]
    fn a_rewritten_port_alone_keeps_the_hostname_and_a_rewritten_path_replaces_the_path() {
        let mut frontend = redirect("old.test");
        frontend.rewrite_port = Some(8443);
        frontend.rewrite_path = Some("/new%PATH".to_string());
        assert_eq!(
            location(frontend, b"old.test:80", b"/a?c=1").as_deref(),
            Some("old.test:8443/new/a?c=1")
        );
    }

    #[test]
    fn a_frontend_without_rewrites_leaves_the_location_to_the_caller() {
        assert_eq!(location(redirect("old.test"), b"old.test", b"/a"), None);
    }
}
