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
//! - connections to the targets kept alive for the ALB's idle timeout.
//!
//! One nginx process (no master/worker split), so the process the twin stops is all of it.

use std::path::Path;

/// nginx's configuration: temporary files under `dir`, `targets` (`address:port`) behind the
/// listeners, kept-alive connections idle at most `idle_s` seconds. The certificate and key are
/// `dir/server.crt` and `dir/server.key`.
pub fn nginx_conf(dir: &Path, targets: &[String], idle_s: u64) -> String {
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
         location / {{\n      proxy_pass http://targets;\n      proxy_http_version 1.1;\n      \
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
        ] {
            assert!(conf.contains(needed), "{needed} in {conf}");
        }
    }
}
