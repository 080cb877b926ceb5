//! The application load balancer's listeners, played by nginx in the load balancer's
//! interface of the twin, set as the stack sets the ALB:
//!
//! - HTTPS on 443 with the certificate for the api's name (TLS 1.2 and 1.3, as the listener's
//!   `ELBSecurityPolicy-TLS13-1-2-2021-06`), forwarding to the target group's tasks; HTTP on 80
//!   answering a permanent redirect to HTTPS (the `http` listener);
//! - `X-Forwarded-For` appended with the caller (`xff_header_processing_mode = "append"`:
//!   `$proxy_add_x_forwarded_for` joins the incoming lines, then adds the peer);
//! - header names that are not letters, digits and `-` dropped
//!   (`drop_invalid_header_fields`: `ignore_invalid_headers on`, `underscores_in_headers off`);
//! - connections to the targets kept alive for the ALB's idle timeout;
//! - no retry on another target: a target that refuses or drops the connection is the
//!   client's 502 (Application Load Balancers, *Troubleshoot your Application Load Balancers*:
//!   "HTTP 502: Bad gateway … the load balancer received a TCP RST from the target when
//!   attempting to establish a connection"), and the target keeps its share of requests until
//!   health checks take it out (`proxy_next_upstream off`: nginx then counts no failure either).
//!
//! One nginx process (no master/worker split), so the process the twin stops is all of it.

use std::path::Path;

/// nginx's configuration: temporary files under `dir`, `targets` (`address:port`) behind the
/// listeners, kept-alive connections idle at most `idle_s` seconds, and, with `waf`, every
/// request first put to the web ACL's evaluator on that loopback port (nginx's
/// `auth_request`): a request it blocks is answered as WAF blocks, the load balancer's own
/// `403 Forbidden` page, never the api's. The certificate and key are `dir/server.crt` and
/// `dir/server.key`.
pub fn nginx_conf(dir: &Path, targets: &[String], idle_s: u64, waf: Option<u16>) -> String {
    let (check, inspect) = match waf {
        Some(port) => (
            format!(
                "      auth_request /_twin_waf;\n      auth_request_set $waf_rule $upstream_http_{};\n      error_page 403 = @waf_blocked;\n",
                super::waf::RULE_HEADER.replace('-', "_")
            ),
            format!(
                "    location = /_twin_waf {{\n      internal;\n      proxy_pass http://127.0.0.1:{port};\n      \
                 proxy_pass_request_body off;\n      proxy_set_header Content-Length \"\";\n      \
                 proxy_set_header {} $request_method;\n      proxy_set_header {} $request_uri;\n      \
                 proxy_set_header {} $remote_addr;\n    }}\n    location @waf_blocked {{\n      \
                 add_header {} $waf_rule always;\n      default_type text/html;\n      \
                 return 403 \"<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden</h1></center></body></html>\";\n    }}\n",
                super::waf::METHOD_HEADER,
                super::waf::URI_HEADER,
                super::waf::CLIENT_HEADER,
                super::waf::RULE_HEADER
            ),
        ),
        None => (String::new(), String::new()),
    };
    let t = dir.display();
    let upstream: String = targets
        .iter()
        .map(|target| format!("    server {target};\n"))
        .collect();
    format!(
        "daemon off;\nmaster_process off;\npid {t}/nginx.pid;\nerror_log {t}/error.log;\n\
         events {{}}\n\
         http {{\n  access_log {t}/access.log;\n  client_body_temp_path {t}/body;\n  \
         proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  \
         scgi_temp_path {t}/scgi;\n  ignore_invalid_headers on;\n  underscores_in_headers off;\n  \
         upstream targets {{\n{upstream}    keepalive 16;\n    keepalive_timeout {idle_s}s;\n  }}\n  \
         server {{\n    listen 80;\n    return 301 https://$host$request_uri;\n  }}\n  \
         server {{\n    listen 443 ssl;\n    ssl_certificate {t}/server.crt;\n    \
         ssl_certificate_key {t}/server.key;\n    ssl_protocols TLSv1.2 TLSv1.3;\n    \
         {inspect}    location / {{\n{check}      proxy_pass http://targets;\n      proxy_next_upstream off;\n      proxy_http_version 1.1;\n      \
         proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n      \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      \
         proxy_set_header X-Forwarded-Proto https;\n      proxy_set_header X-Forwarded-Port 443;\n    \
         }}\n  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listeners_forward_to_every_target_and_append_the_caller() {
        let conf = nginx_conf(
            Path::new("/tmp/alb"),
            &["10.20.128.5:8080".into(), "10.20.144.5:8080".into()],
            60,
            Some(9100),
        );
        for needed in [
            "server 10.20.128.5:8080;",
            "server 10.20.144.5:8080;",
            "listen 443 ssl;",
            "return 301 https://",
            "$proxy_add_x_forwarded_for",
            "ignore_invalid_headers on;",
            "underscores_in_headers off;",
            "keepalive_timeout 60s;",
            "auth_request /_twin_waf;",
            "proxy_pass http://127.0.0.1:9100;",
            "error_page 403 = @waf_blocked;",
            "proxy_next_upstream off;",
        ] {
            assert!(conf.contains(needed), "{needed} in {conf}");
        }
    }

    /// nginx itself accepts the configuration (`nginx -t`), certificate and all.
    #[test]
    fn nginx_accepts_the_listeners() {
        let Some(nginx) = crate::cmd::which("nginx") else {
            panic!(
                "nginx plays the load balancer: apt-get install nginx-light (or `cargo xtask setup`)"
            );
        };
        let dir = std::env::temp_dir().join(format!("tollgate-alb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = crate::tls::TestCa::new("alb test").expect("ca");
        let cert = ca.server_cert(&["api.example.test"]).expect("cert");
        std::fs::write(dir.join("server.crt"), cert.cert_pem).expect("cert");
        std::fs::write(dir.join("server.key"), cert.key_pem).expect("key");
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            nginx_conf(&dir, &["10.0.0.5:8080".into()], 60, Some(9100)),
        )
        .expect("conf");
        let out = std::process::Command::new(nginx)
            .arg("-t")
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .output()
            .expect("nginx runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
