use super::*;

const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

#[tokio::test]
async fn the_attempt_after_max_failures_is_refused() {
    let t = Throttle::new(3, 3, Duration::from_secs(60));
    for _ in 0..3 {
        let a = t.begin(Some("bob"), A).await.unwrap();
        t.failed(a);
    }
    let retry = t.begin(Some("bob"), A).await.err().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    // Same user from elsewhere: still refused (per username).
    assert!(t.begin(Some("bob"), B).await.is_err());
    // Another user from the same address: refused too (per address).
    assert!(t.begin(Some("alice"), A).await.is_err());
    // Another user elsewhere: fine.
    let a = t.begin(Some("alice"), B).await.unwrap();
    t.succeeded(a);
}

#[tokio::test]
async fn one_users_failures_leave_the_address_budget_to_others() {
    let t = Throttle::new(5, 50, Duration::from_secs(60));
    for _ in 0..5 {
        let a = t.begin(Some("alice"), A).await.unwrap();
        t.failed(a);
    }
    assert!(t.begin(Some("alice"), A).await.is_err());
    assert!(t.begin(Some("alice"), B).await.is_err());
    let a = t.begin(Some("bob"), A).await.unwrap();
    t.succeeded(a);
    // The address's own budget: 50 failures in all.
    for i in 0..45 {
        let a = t.begin(Some(&format!("u{i}")), A).await.unwrap();
        t.failed(a);
    }
    assert!(t.begin(Some("carol"), A).await.is_err());
    assert!(t.begin(Some("carol"), B).await.is_ok());
}

#[tokio::test]
async fn success_resets_the_username() {
    let t = Throttle::new(3, 3, Duration::from_secs(60));
    for _ in 0..2 {
        let a = t.begin(Some("bob"), A).await.unwrap();
        t.failed(a);
    }
    let a = t.begin(Some("bob"), B).await.unwrap();
    t.succeeded(a);
    for _ in 0..3 {
        let a = t.begin(Some("bob"), B).await.unwrap();
        t.failed(a);
    }
    assert!(t.begin(Some("bob"), B).await.is_err());
}

#[tokio::test]
async fn correct_attempts_in_flight_never_refuse_each_other() {
    let t = Throttle::new(5, 50, Duration::from_secs(60));
    let users = ["ann", "ben", "cat", "dan"];
    let mut held = Vec::new();
    for u in users.iter().chain(users.iter()) {
        held.push(t.begin(Some(u), A).await.unwrap());
    }
    for a in held {
        t.succeeded(a);
    }
}

#[tokio::test]
async fn concurrent_attempts_wait_for_those_in_flight() {
    let t = Arc::new(Throttle::new(2, 50, Duration::from_secs(60)));
    let a1 = t.begin(Some("bob"), A).await.unwrap();
    let a2 = t.begin(Some("bob"), A).await.unwrap();
    // Two in flight fill bob's budget: a third waits instead of slipping
    // past the check...
    let third = {
        let t = t.clone();
        tokio::spawn(async move { t.begin(Some("bob"), A).await })
    };
    tokio::task::yield_now().await;
    assert!(!third.is_finished());
    // ... until one is decided: a1 undecided leaves room.
    drop(a1);
    let a3 = third.await.unwrap().unwrap();
    t.failed(a2);
    t.failed(a3);
    // Two failures: bob is over his budget now.
    assert!(t.begin(Some("bob"), B).await.is_err());
}

#[tokio::test]
async fn a_wait_for_attempts_in_flight_is_bounded() {
    let t = Throttle::with_max_wait(1, 50, Duration::from_secs(60), Duration::from_millis(20));
    let a1 = t.begin(Some("bob"), A).await.unwrap();
    assert_eq!(t.begin(Some("bob"), B).await.err(), Some(1));
    t.succeeded(a1);
    assert!(t.begin(Some("bob"), B).await.is_ok());
}

#[tokio::test]
async fn the_window_slides() {
    let t = Throttle::new(1, 1, Duration::from_millis(50));
    let a = t.begin(None, A).await.unwrap();
    t.failed(a);
    assert_eq!(t.begin(None, A).await.err(), Some(1));
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(t.begin(None, A).await.is_ok());
}

#[tokio::test]
async fn refused_attempts_create_no_username_slot() {
    let t = Throttle::new(3, 3, Duration::from_secs(60));
    for _ in 0..3 {
        let a = t.begin(Some("mallory"), A).await.unwrap();
        t.failed(a);
    }
    assert_eq!(t.tracked_usernames(), 1);
    // The address is throttled: a flood of new usernames from it must not
    // push anyone's counter out of the map.
    for i in 0..1000 {
        assert!(t.begin(Some(&format!("victim{i}")), A).await.is_err());
    }
    assert_eq!(t.tracked_usernames(), 1);
    // Successful and undecided attempts leave no slot either.
    let ok = t.begin(Some("olga"), B).await.unwrap();
    t.succeeded(ok);
    drop(t.begin(Some("pete"), B).await.unwrap());
    assert_eq!(t.tracked_usernames(), 1);
}

#[test]
fn ipv6_by_64() {
    let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
    assert_eq!(addr_key(a), addr_key(b));
    let m: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(addr_key(m), A);
}
